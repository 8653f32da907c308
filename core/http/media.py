"""What an HLS object is, judged by its key: its Content-Type and how long caches may keep it.

Shoal's content is written once under a key and never rewritten, except playlists: a live or
re-packaged playlist changes in place, so it gets a short max-age, and everything else (init and
media segments, subtitles, posters) is cacheable for a long time and marked `immutable`
(RFC 8246) so that browsers do not even revalidate it on reload. An object whose kind is not
known is not promised to be immutable: it gets the short playlist lifetime.
"""

import enum
from dataclasses import dataclass


class MediaKind(enum.Enum):
    PLAYLIST = "playlist"
    INIT_SEGMENT = "init_segment"
    MEDIA_SEGMENT = "media_segment"
    SUBTITLES = "subtitles"
    POSTER = "poster"
    OTHER = "other"


@dataclass(frozen=True)
class _MediaType:
    kind: MediaKind
    content_type: str


_BY_EXTENSION: dict[str, _MediaType] = {
    # RFC 8216 section 4: the playlist media type.
    ".m3u8": _MediaType(MediaKind.PLAYLIST, "application/vnd.apple.mpegurl"),
    # RFC 8216 section 3.3: fragmented MP4 segments; video/iso.segment is registered with IANA
    # for ISO BMFF media segments.
    ".m4s": _MediaType(MediaKind.MEDIA_SEGMENT, "video/iso.segment"),
    ".mp4": _MediaType(MediaKind.INIT_SEGMENT, "video/mp4"),
    ".m4a": _MediaType(MediaKind.MEDIA_SEGMENT, "audio/mp4"),
    # RFC 8216 section 3.2: MPEG-2 transport stream segments.
    ".ts": _MediaType(MediaKind.MEDIA_SEGMENT, "video/mp2t"),
    # RFC 8216 section 3.5: WebVTT subtitle segments.
    ".vtt": _MediaType(MediaKind.SUBTITLES, "text/vtt"),
    ".jpg": _MediaType(MediaKind.POSTER, "image/jpeg"),
    ".jpeg": _MediaType(MediaKind.POSTER, "image/jpeg"),
}
_OTHER = _MediaType(MediaKind.OTHER, "application/octet-stream")


def _media_type(key: str) -> _MediaType:
    name = key.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    # A name that starts with its only dot (".m3u8") has no extension, just as in pathlib.
    if dot <= 0:
        return _OTHER
    return _BY_EXTENSION.get(name[dot:].lower(), _OTHER)


def media_kind(key: str) -> MediaKind:
    """The kind of object a key names, by its extension (case-insensitive)."""
    return _media_type(key).kind


def content_type(key: str) -> str:
    """The Content-Type of the object a key names; `application/octet-stream` if unknown."""
    return _media_type(key).content_type


def cache_control(key: str, *, playlist_max_age: int, segment_max_age: int) -> str:
    """The Cache-Control value for the object a key names, given the two lifetimes in seconds.

    Playlists and unknown objects: `public, max-age=<playlist_max_age>`. Segments, init
    segments, subtitles and posters: `public, max-age=<segment_max_age>, immutable`.
    """
    if playlist_max_age < 0 or segment_max_age < 0:
        raise ValueError("max-age values are non-negative seconds")
    kind = media_kind(key)
    if kind in (MediaKind.PLAYLIST, MediaKind.OTHER):
        return f"public, max-age={playlist_max_age}"
    return f"public, max-age={segment_max_age}, immutable"


__all__ = ["MediaKind", "cache_control", "content_type", "media_kind"]
