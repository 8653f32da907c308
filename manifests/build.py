"""Render playlists as text, and build a media playlist from segment durations.

The text follows RFC 8216: LF line endings, one tag or URI per line, quoted-strings where the
spec asks for them. Rendering does not validate (that is `validate`'s job), but it refuses any
value that would change the playlist's structure once written, such as a URI holding a newline
(which could inject tags) or a quote inside a quoted attribute.
"""

import math
import re
from collections.abc import Sequence

from manifests.model import (
    ByteRange,
    InitSection,
    ManifestError,
    MasterPlaylist,
    MediaPlaylist,
    PlaylistType,
    Segment,
    Variant,
    format_duration,
)

# RFC 8216 section 4.1 allows no control characters in a playlist but the line ending; U+2028 and
# U+2029 end a line for many parsers too (m3u8 among them, through str.splitlines).
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def minimum_version(playlist: MasterPlaylist | MediaPlaylist) -> int:
    """The lowest EXT-X-VERSION the playlist's features need (RFC 8216 section 7)."""
    if isinstance(playlist, MasterPlaylist):
        return 1  # every modelled master playlist attribute works with version 1
    if playlist.init is not None:
        return 6  # EXT-X-MAP in a playlist without EXT-X-I-FRAMES-ONLY
    if any(segment.byterange is not None for segment in playlist.segments):
        return 4  # EXT-X-BYTERANGE
    if playlist.segments:
        return 3  # floating-point EXTINF durations: they are always written with decimals
    return 1


def render_master(playlist: MasterPlaylist) -> str:
    """The text of a master playlist."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{_declared_version(playlist)}"]
    if playlist.independent_segments:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    for variant in playlist.variants:
        lines += [_stream_inf(variant), _uri_line(variant.uri)]
    return "\n".join(lines) + "\n"


def render_media(playlist: MediaPlaylist) -> str:
    """The text of a media playlist."""
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{_declared_version(playlist)}",
        f"#EXT-X-TARGETDURATION:{playlist.target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{playlist.media_sequence}",
    ]
    if playlist.playlist_type is not None:
        lines.append(f"#EXT-X-PLAYLIST-TYPE:{playlist.playlist_type}")
    if playlist.independent_segments:
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    if playlist.init is not None:
        map_attributes = f"URI={_quoted(playlist.init.uri)}"
        if playlist.init.byterange is not None:
            map_attributes += f",BYTERANGE={_quoted(_byterange(playlist.init.byterange))}"
        lines.append(f"#EXT-X-MAP:{map_attributes}")
    for segment in playlist.segments:
        lines.append(f"#EXTINF:{format_duration(segment.duration)},{_plain(segment.title)}")
        if segment.byterange is not None:
            lines.append(f"#EXT-X-BYTERANGE:{_byterange(segment.byterange)}")
        lines.append(_uri_line(segment.uri))
    if playlist.endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def media_playlist_for_segments(
    durations: Sequence[float],
    segment_uris: str | Sequence[str],
    init_uri: str | None,
    *,
    media_sequence: int = 0,
    playlist_type: PlaylistType | None = "VOD",
    endlist: bool = True,
    independent_segments: bool = True,
) -> MediaPlaylist:
    """A media playlist of consecutive segments lasting `durations` seconds.

    `segment_uris` holds one URI per segment, or is a `str.format` pattern whose `{index}` is the
    segment's media sequence number, e.g. "seg_{index:05d}.m4s". EXT-X-TARGETDURATION is the
    smallest positive value RFC 8216 section 4.3.3.1 allows: the longest duration, rounded to
    the nearest integer.
    """
    if not durations:
        raise ManifestError("a media playlist needs at least one segment")
    if isinstance(segment_uris, str):
        uris = [segment_uris.format(index=media_sequence + i) for i in range(len(durations))]
    else:
        uris = list(segment_uris)
    if len(uris) != len(durations):
        raise ManifestError(f"{len(durations)} durations but {len(uris)} segment URIs")
    if not all(0 < duration < math.inf for duration in durations):
        raise ManifestError("segment durations must be positive and finite")
    segments = tuple(Segment(uri, duration) for uri, duration in zip(uris, durations, strict=True))
    return MediaPlaylist(
        target_duration=max(1, *(segment.rounded_duration for segment in segments)),
        segments=segments,
        media_sequence=media_sequence,
        init=None if init_uri is None else InitSection(init_uri),
        playlist_type=playlist_type,
        endlist=endlist,
        independent_segments=independent_segments,
    )


def _declared_version(playlist: MasterPlaylist | MediaPlaylist) -> int:
    return minimum_version(playlist) if playlist.version is None else playlist.version


def _stream_inf(variant: Variant) -> str:
    attributes = [f"BANDWIDTH={variant.bandwidth}"]
    if variant.average_bandwidth is not None:
        attributes.append(f"AVERAGE-BANDWIDTH={variant.average_bandwidth}")
    if variant.codecs is not None:
        attributes.append(f"CODECS={_quoted(variant.codecs)}")
    if variant.resolution is not None:
        width, height = variant.resolution
        attributes.append(f"RESOLUTION={width}x{height}")
    if variant.frame_rate is not None:
        # RFC 8216 section 4.3.4.2: FRAME-RATE is rounded to three decimal places.
        attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
    if variant.stable_variant_id is not None:
        attributes.append(f"STABLE-VARIANT-ID={_quoted(variant.stable_variant_id)}")
    return "#EXT-X-STREAM-INF:" + ",".join(attributes)


def _byterange(byterange: ByteRange) -> str:
    if byterange.offset is None:
        return str(byterange.length)
    return f"{byterange.length}@{byterange.offset}"


def _plain(value: str) -> str:
    """`value` if it can end a line as is: parsers drop whitespace at either end of a line."""
    if _LINE_BREAKING.search(value) or value != value.strip():
        raise ManifestError(f"{value!r} cannot be written into a playlist line")
    return value


def _uri_line(uri: str) -> str:
    """`uri` if it reads back as a URI line: not blank, and not a comment or tag (section 4.1)."""
    if not uri or uri.startswith("#"):
        raise ManifestError(f"{uri!r} cannot be written as a URI line")
    return _plain(uri)


def _quoted(value: str) -> str:
    """`value` as a quoted-string, which holds no double quote, CR or LF (section 4.2)."""
    if '"' in value or _LINE_BREAKING.search(value):
        raise ManifestError(f"{value!r} cannot be written as a quoted-string")
    return f'"{value}"'
