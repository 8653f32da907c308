"""Check playlists against RFC 8216 and Shoal's packaging rules, listing every problem found.

An empty list means the playlist is fit to publish. By default URIs must also keep a package
self-contained: relative, and never climbing out of the package with '..', so a package plays
from wherever it is stored and cannot point a player at another one.
"""

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

from manifests.build import minimum_version
from manifests.model import ByteRange, MasterPlaylist, MediaPlaylist
from manifests.rewrite import is_relative_reference

# Playlists do not declare their segment format; the extension is the practical signal.
_FMP4_EXTENSIONS = (".m4s", ".mp4", ".m4v", ".m4a", ".cmfv", ".cmfa")
_PATH_SEPARATOR = re.compile(r"[/\\]")
_QUERY_OR_FRAGMENT = re.compile(r"[?#]")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a playlist: `where` names the part ("variant 2 (720p/index.m3u8)")."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def validate_master(playlist: MasterPlaylist, *, self_contained: bool = True) -> list[Problem]:
    """Every problem of a master playlist (none: fit to publish)."""
    return list(_master_problems(playlist, self_contained))


def validate_media(playlist: MediaPlaylist, *, self_contained: bool = True) -> list[Problem]:
    """Every problem of a media playlist (none: fit to publish)."""
    return list(_media_problems(playlist, self_contained))


def _master_problems(playlist: MasterPlaylist, self_contained: bool) -> Iterator[Problem]:
    yield from _version_problems(playlist)
    if not playlist.variants:
        yield Problem("playlist", "no variant streams")
    seen_uris: set[str] = set()
    for number, variant in enumerate(playlist.variants, 1):
        where = f"variant {number} ({variant.uri})"
        if variant.uri in seen_uris:
            yield Problem(where, "URI already used by another variant")
        seen_uris.add(variant.uri)
        yield from _uri_problems(where, variant.uri, self_contained)
        if variant.bandwidth <= 0:
            yield Problem(where, f"BANDWIDTH must be positive, got {variant.bandwidth}")
        average = variant.average_bandwidth
        if average is not None and not 0 < average <= variant.bandwidth:
            # The average bit rate of the segments cannot exceed the peak one (section 4.3.4.2).
            yield Problem(where, f"AVERAGE-BANDWIDTH {average} is not within (0, BANDWIDTH]")
        if not variant.codecs:
            # Section 4.3.4.2: every EXT-X-STREAM-INF SHOULD have CODECS; players choose by it.
            yield Problem(where, "no CODECS")
        if variant.resolution is not None and min(variant.resolution) <= 0:
            yield Problem(where, f"RESOLUTION must be positive, got {variant.resolution}")
        if variant.frame_rate is not None and not 0 < variant.frame_rate < math.inf:
            yield Problem(where, f"FRAME-RATE must be positive, got {variant.frame_rate}")


def _media_problems(playlist: MediaPlaylist, self_contained: bool) -> Iterator[Problem]:
    yield from _version_problems(playlist)
    if playlist.target_duration <= 0:
        yield Problem("playlist", f"EXT-X-TARGETDURATION {playlist.target_duration} not positive")
    if playlist.media_sequence < 0:
        yield Problem("playlist", f"EXT-X-MEDIA-SEQUENCE {playlist.media_sequence} is negative")
    if playlist.playlist_type == "VOD" and not playlist.endlist:
        # Section 4.3.3.5: a VOD playlist never changes, so it is complete and says so.
        yield Problem("playlist", "VOD playlist without EXT-X-ENDLIST")
    if playlist.endlist and not playlist.segments:
        yield Problem("playlist", "ended playlist without segments")
    if playlist.init is None:
        if any(_is_fmp4(segment.uri) for segment in playlist.segments):
            # Section 3.3: fMP4 segments need a Media Initialization Section, given by EXT-X-MAP.
            yield Problem("playlist", "fMP4 segments without EXT-X-MAP")
    else:
        where = f"EXT-X-MAP ({playlist.init.uri})"
        yield from _uri_problems(where, playlist.init.uri, self_contained)
        if playlist.init.byterange is not None:
            yield from _byterange_problems(where, playlist.init.byterange)
    previous = None
    for number, segment in enumerate(playlist.segments, 1):
        where = f"segment {number} ({segment.uri})"
        yield from _uri_problems(where, segment.uri, self_contained)
        if not 0 < segment.duration < math.inf:
            yield Problem(where, f"duration must be positive seconds, got {segment.duration}")
        elif segment.rounded_duration > playlist.target_duration:
            # Section 4.3.3.1: rounded to the nearest integer, no EXTINF exceeds the target.
            yield Problem(
                where,
                f"duration {segment.duration} rounds to {segment.rounded_duration} s, longer than"
                f" EXT-X-TARGETDURATION {playlist.target_duration}",
            )
        if segment.byterange is not None:
            yield from _byterange_problems(where, segment.byterange)
            follows_same_resource = (
                previous is not None
                and previous.byterange is not None
                and previous.uri == segment.uri
            )
            if segment.byterange.offset is None and not follows_same_resource:
                # Section 4.3.2.2: a range without offset continues the previous segment's range.
                yield Problem(where, "BYTERANGE without offset after a different resource")
        previous = segment


def _version_problems(playlist: MasterPlaylist | MediaPlaylist) -> Iterator[Problem]:
    needed = minimum_version(playlist)
    if playlist.version is not None and playlist.version < needed:
        # Section 7 lists the version each feature needs.
        yield Problem("playlist", f"EXT-X-VERSION {playlist.version} below the {needed} needed")


def _uri_problems(where: str, uri: str, self_contained: bool) -> Iterator[Problem]:
    if not uri:
        yield Problem(where, "empty URI")
    elif self_contained and not is_relative_reference(uri):
        yield Problem(where, f"URI {uri!r} is absolute; a package must be self-contained")
    elif self_contained and ".." in _PATH_SEPARATOR.split(unquote(_path(uri))):
        yield Problem(where, f"URI {uri!r} climbs out of the package with '..'")


def _byterange_problems(where: str, byterange: ByteRange) -> Iterator[Problem]:
    if byterange.length <= 0 or (byterange.offset is not None and byterange.offset < 0):
        yield Problem(where, f"BYTERANGE {byterange} must have a positive length, offset >= 0")


def _is_fmp4(uri: str) -> bool:
    return _path(uri).lower().endswith(_FMP4_EXTENSIONS)


def _path(uri: str) -> str:
    return _QUERY_OR_FRAGMENT.split(uri, maxsplit=1)[0]
