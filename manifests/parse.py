"""Parse playlist text into the model, strictly: any malformed input raises `ManifestError`.

The text is read by `m3u8.loads` (never `m3u8.load`, which fetches URLs). m3u8 is lenient, so
this module also checks what it lets through: a missing #EXTM3U header, a tag without its URI
line or a URI line without its tag, master and media tags mixed, repeated tags, negative or
non-finite numbers. Whatever m3u8 raises on bad input becomes a `ManifestError`. Tags the model
cannot express are refused when dropping them would change playback (encryption,
discontinuities, I-frame playlists, gaps, several initialization sections); informational tags
(EXT-X-PROGRAM-DATE-TIME, EXT-X-MEDIA alternatives, unknown tags...) are ignored.
"""

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import m3u8

from manifests.model import (
    ByteRange,
    InitSection,
    ManifestError,
    MasterPlaylist,
    MediaPlaylist,
    PlaylistType,
    Segment,
    Variant,
)

# Shoal's playlists are a few KiB; the bound keeps a hostile input from costing much.
MAX_PLAYLIST_BYTES = 1024 * 1024

# RFC 8216 section 4.1: no control characters but CR LF or LF ending a line. U+2028 and U+2029 are
# refused too, because m3u8 (through str.splitlines) would take them for line ends.
_FORBIDDEN_CHARACTER = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]|\r(?!\n)")
# Section 4.3.4: tags of master playlists, which never share a playlist with media tags.
_MASTER_TAGS = frozenset(
    {
        "#EXT-X-MEDIA",
        "#EXT-X-STREAM-INF",
        "#EXT-X-I-FRAME-STREAM-INF",
        "#EXT-X-SESSION-DATA",
        "#EXT-X-SESSION-KEY",
    }
)
# Sections 4.3.2 and 4.3.3 (and EXT-X-GAP from draft-pantos-hls-rfc8216bis).
_MEDIA_TAGS = frozenset(
    {
        "#EXTINF",
        "#EXT-X-BYTERANGE",
        "#EXT-X-DISCONTINUITY",
        "#EXT-X-KEY",
        "#EXT-X-MAP",
        "#EXT-X-PROGRAM-DATE-TIME",
        "#EXT-X-DATERANGE",
        "#EXT-X-GAP",
        "#EXT-X-TARGETDURATION",
        "#EXT-X-MEDIA-SEQUENCE",
        "#EXT-X-DISCONTINUITY-SEQUENCE",
        "#EXT-X-ENDLIST",
        "#EXT-X-PLAYLIST-TYPE",
        "#EXT-X-I-FRAMES-ONLY",
    }
)
# Section 4.3.3: media playlist tags appear at most once; section 4.3.1.2: so does EXT-X-VERSION.
_AT_MOST_ONCE_TAGS = frozenset(
    {
        "#EXT-X-VERSION",
        "#EXT-X-TARGETDURATION",
        "#EXT-X-MEDIA-SEQUENCE",
        "#EXT-X-DISCONTINUITY-SEQUENCE",
        "#EXT-X-ENDLIST",
        "#EXT-X-PLAYLIST-TYPE",
        "#EXT-X-I-FRAMES-ONLY",
    }
)
# Media tags whose loss would change how segments decode or line up in time.
_UNSUPPORTED_MEDIA_TAGS = frozenset(
    {
        "#EXT-X-KEY",
        "#EXT-X-DISCONTINUITY",
        "#EXT-X-DISCONTINUITY-SEQUENCE",
        "#EXT-X-I-FRAMES-ONLY",
        "#EXT-X-GAP",
    }
)
_PLAYLIST_TYPES: dict[str, PlaylistType] = {"vod": "VOD", "event": "EVENT"}  # m3u8 lowercases
_BYTERANGE = re.compile(r"(\d+)(?:@(\d+))?")
_RESOLUTION = re.compile(r"(\d+)x(\d+)")


@dataclass(frozen=True)
class _Loaded:
    """The text as m3u8 read it, with the line counts m3u8 does not keep."""

    data: dict[str, Any]
    tags: Counter[str]
    uri_lines: int
    is_master: bool


def parse(text: str) -> MasterPlaylist | MediaPlaylist:
    """The playlist in `text`, master or media (told apart by their tags)."""
    loaded = _load(text)
    return _master(loaded) if loaded.is_master else _media(loaded)


def parse_master(text: str) -> MasterPlaylist:
    """The master playlist in `text`; a media playlist is an error."""
    loaded = _load(text)
    if not loaded.is_master:
        raise ManifestError(
            "expected a master playlist, got a media playlist (no EXT-X-STREAM-INF)"
        )
    return _master(loaded)


def parse_media(text: str) -> MediaPlaylist:
    """The media playlist in `text`; a master playlist is an error."""
    loaded = _load(text)
    if loaded.is_master:
        raise ManifestError("expected a media playlist, got a master playlist")
    return _media(loaded)


def check_playlist_text(text: str) -> None:
    """Raise `ManifestError` unless `text` can be a playlist at all.

    It must fit in `MAX_PLAYLIST_BYTES` of UTF-8, start with a #EXTM3U line and hold no byte
    order mark or control character (RFC 8216 sections 4.1 and 4.3.1.1).
    """
    if len(text) > MAX_PLAYLIST_BYTES or len(text.encode()) > MAX_PLAYLIST_BYTES:
        raise ManifestError(f"playlist larger than {MAX_PLAYLIST_BYTES} bytes")
    if text.startswith("\ufeff"):
        raise ManifestError("playlist starts with a byte order mark (RFC 8216 section 4.1)")
    if text.split("\n", 1)[0].removesuffix("\r") != "#EXTM3U":
        raise ManifestError("playlist does not start with a #EXTM3U line")
    forbidden = _FORBIDDEN_CHARACTER.search(text)
    if forbidden:
        line_number = text.count("\n", 0, forbidden.start()) + 1
        raise ManifestError(f"control character {forbidden.group()!r} on line {line_number}")


def _load(text: str) -> _Loaded:
    check_playlist_text(text)
    lines = [line.strip() for line in text.split("\n")]
    tags = Counter(line.split(":", 1)[0] for line in lines if line.startswith("#EXT"))
    for tag in sorted(_AT_MOST_ONCE_TAGS):
        if tags[tag] > 1:
            raise ManifestError(f"{tag} appears {tags[tag]} times; a playlist allows one")
    master_tags = sorted(_MASTER_TAGS & tags.keys())
    media_tags = sorted(_MEDIA_TAGS & tags.keys())
    if master_tags and media_tags:
        raise ManifestError(
            f"playlist mixes master ({master_tags[0]}) and media ({media_tags[0]}) tags,"
            " which RFC 8216 section 4.3.4 forbids"
        )
    try:
        data: dict[str, Any] = m3u8.loads(text).data
    except Exception as error:  # m3u8 reports bad input with whatever its internals raise
        raise ManifestError(f"malformed playlist: {type(error).__name__}: {error}") from error
    uri_lines = sum(1 for line in lines if line and not line.startswith("#"))
    return _Loaded(data, tags, uri_lines, is_master=bool(master_tags))


def _master(loaded: _Loaded) -> MasterPlaylist:
    raw_variants: list[dict[str, Any]] = loaded.data["playlists"]
    stream_infs = loaded.tags["#EXT-X-STREAM-INF"]
    if not len(raw_variants) == stream_infs == loaded.uri_lines:
        raise ManifestError(
            f"{stream_infs} EXT-X-STREAM-INF tags but {loaded.uri_lines} URI lines: each tag must"
            " be followed by its variant's URI (RFC 8216 section 4.3.4.2)"
        )
    return MasterPlaylist(
        variants=tuple(_variant(raw) for raw in raw_variants),
        independent_segments=bool(loaded.data["is_independent_segments"]),
        version=_version(loaded.data),
    )


def _variant(raw: dict[str, Any]) -> Variant:
    uri = str(raw["uri"])
    attributes: dict[str, Any] = raw["stream_info"]  # m3u8 already refused a missing BANDWIDTH
    average_bandwidth = attributes.get("average_bandwidth")
    resolution = attributes.get("resolution")
    codecs = attributes.get("codecs")
    frame_rate = attributes.get("frame_rate")
    stable_variant_id = attributes.get("stable_variant_id")
    return Variant(
        uri=uri,
        bandwidth=_integer(attributes["bandwidth"], f"BANDWIDTH of {uri!r}"),
        average_bandwidth=None
        if average_bandwidth is None
        else _integer(average_bandwidth, f"AVERAGE-BANDWIDTH of {uri!r}"),
        resolution=None if resolution is None else _resolution(resolution, uri),
        codecs=None if codecs is None else str(codecs),
        frame_rate=None if frame_rate is None else _decimal(frame_rate, f"FRAME-RATE of {uri!r}"),
        stable_variant_id=None if stable_variant_id is None else str(stable_variant_id),
    )


def _media(loaded: _Loaded) -> MediaPlaylist:
    data, tags = loaded.data, loaded.tags
    unsupported = sorted(_UNSUPPORTED_MEDIA_TAGS & tags.keys())
    if unsupported:
        raise ManifestError(f"{unsupported[0]} is not supported: the model cannot express it")
    if tags["#EXT-X-TARGETDURATION"] == 0:
        raise ManifestError(
            "media playlist without EXT-X-TARGETDURATION (RFC 8216 section 4.3.3.1)"
        )
    if tags["#EXT-X-MAP"] > 1:
        raise ManifestError("more than one EXT-X-MAP is not supported")
    raw_segments: list[dict[str, Any]] = data["segments"]
    extinfs = tags["#EXTINF"]
    if not len(raw_segments) == extinfs == loaded.uri_lines or any(
        "uri" not in raw for raw in raw_segments
    ):
        raise ManifestError(
            f"{extinfs} EXTINF tags but {loaded.uri_lines} URI lines: each EXTINF must be"
            " followed by its segment's URI (RFC 8216 section 4.3.2.1)"
        )
    raw_maps: list[dict[str, Any]] = data["segment_map"]
    if raw_maps and raw_segments and "init_section" not in raw_segments[0]:
        raise ManifestError("EXT-X-MAP after the first segment is not supported")
    raw_type = data["playlist_type"]
    playlist_type = None if raw_type is None else _PLAYLIST_TYPES.get(str(raw_type))
    if raw_type is not None and playlist_type is None:
        raise ManifestError(f"EXT-X-PLAYLIST-TYPE must be VOD or EVENT, got {raw_type!r}")
    return MediaPlaylist(
        target_duration=_integer(data["targetduration"], "EXT-X-TARGETDURATION"),
        segments=tuple(_segment(raw) for raw in raw_segments),
        media_sequence=_integer(data["media_sequence"], "EXT-X-MEDIA-SEQUENCE"),
        init=_init_section(raw_maps[0]) if raw_maps else None,
        playlist_type=playlist_type,
        endlist=bool(data["is_endlist"]),
        version=_version(data),
        independent_segments=bool(data["is_independent_segments"]),
    )


def _segment(raw: dict[str, Any]) -> Segment:
    uri = str(raw["uri"])
    return Segment(
        uri=uri,
        duration=_decimal(raw["duration"], f"EXTINF of {uri!r}"),
        title=str(raw["title"]),
        byterange=_byterange(raw.get("byterange"), f"EXT-X-BYTERANGE of {uri!r}"),
    )


def _init_section(raw: dict[str, Any]) -> InitSection:
    return InitSection(
        uri=str(raw["uri"]), byterange=_byterange(raw.get("byterange"), "BYTERANGE of EXT-X-MAP")
    )


def _version(data: dict[str, Any]) -> int:
    # RFC 8216 section 4.3.1.2: a playlist without EXT-X-VERSION is compatible with version 1.
    return _integer(data.get("version", 1), "EXT-X-VERSION")


def _integer(value: object, what: str) -> int:
    """A decimal-integer (RFC 8216 section 4.2), which is never negative."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ManifestError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _decimal(value: object, what: str) -> float:
    """A decimal-floating-point (RFC 8216 section 4.2): finite and never negative."""
    if not isinstance(value, float) or not 0 <= value < math.inf:
        raise ManifestError(f"{what} must be a non-negative decimal number, got {value!r}")
    return value


def _byterange(value: object, what: str) -> ByteRange | None:
    if value is None:
        return None
    match = _BYTERANGE.fullmatch(str(value))
    if match is None:
        raise ManifestError(f"{what} must be <length>[@<offset>], got {value!r}")
    length, offset = match.groups()
    return ByteRange(int(length), None if offset is None else int(offset))


def _resolution(value: object, uri: str) -> tuple[int, int]:
    match = _RESOLUTION.fullmatch(str(value))
    if match is None:
        raise ManifestError(f"RESOLUTION of {uri!r} must be <width>x<height>, got {value!r}")
    return int(match[1]), int(match[2])
