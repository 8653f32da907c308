"""HLS playlists (RFC 8216, fMP4/CMAF segments): model, build, parse, validate and rewrite.

Pure, sans-IO code: text and values in, text and values out. The usual round trip is
`render_*` -> text -> `parse_*`; `validate_*` tells whether a playlist is fit to publish, and
`rewrite_uris` edits the URIs of any playlist text without touching the rest.
"""

from manifests.build import (
    media_playlist_for_segments,
    minimum_version,
    render_master,
    render_media,
)
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
from manifests.parse import (
    MAX_PLAYLIST_BYTES,
    check_playlist_text,
    parse,
    parse_master,
    parse_media,
)
from manifests.rewrite import add_query, is_relative_reference, prefix_uris, rewrite_uris
from manifests.validate import Problem, validate_master, validate_media

__all__ = [
    "MAX_PLAYLIST_BYTES",
    "ByteRange",
    "InitSection",
    "ManifestError",
    "MasterPlaylist",
    "MediaPlaylist",
    "PlaylistType",
    "Problem",
    "Segment",
    "Variant",
    "add_query",
    "check_playlist_text",
    "is_relative_reference",
    "media_playlist_for_segments",
    "minimum_version",
    "parse",
    "parse_master",
    "parse_media",
    "prefix_uris",
    "render_master",
    "render_media",
    "rewrite_uris",
    "validate_master",
    "validate_media",
]
