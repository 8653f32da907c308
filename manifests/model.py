"""The playlist model: immutable values that `build` renders, `parse` makes, `validate` checks.

Only what Shoal's packages use is modelled: variant streams in a master playlist, and media
playlists of whole segments with at most one initialization section (fMP4/CMAF or TS). Anything
else is either refused by `parse` or, for text passing through a server, left to `rewrite`,
which works on the text itself.
"""

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

PlaylistType = Literal["VOD", "EVENT"]


class ManifestError(ValueError):
    """A playlist text is malformed or unsupported, or a value cannot be written into one."""


def format_duration(seconds: float) -> str:
    """An EXTINF duration as written: decimal seconds to the microsecond, like ffmpeg."""
    return f"{seconds:.6f}"


@dataclass(frozen=True)
class ByteRange:
    """`length` bytes of a resource from `offset` (RFC 8216 section 4.3.2.2).

    Without an offset, the range starts right after the previous segment's range of the same
    resource.
    """

    length: int
    offset: int | None = None


@dataclass(frozen=True)
class InitSection:
    """The Media Initialization Section fMP4 segments need: EXT-X-MAP (RFC 8216 section 4.3.2.5)."""

    uri: str
    byterange: ByteRange | None = None


@dataclass(frozen=True)
class Segment:
    """One media segment: its EXTINF (duration in seconds, optional title) and its URI line.

    Durations are written to the microsecond, so a duration survives render and parse exactly
    when it is a whole number of microseconds.
    """

    uri: str
    duration: float
    title: str = ""
    byterange: ByteRange | None = None

    @property
    def rounded_duration(self) -> int:
        """The duration as written, rounded to the nearest integer (halves up).

        This is what RFC 8216 section 4.3.3.1 compares with EXT-X-TARGETDURATION; rounding the
        written value rather than the float keeps builders and players in agreement.
        The duration must be finite.
        """
        written = Decimal(format_duration(self.duration))
        return int(written.to_integral_value(rounding=ROUND_HALF_UP))


@dataclass(frozen=True, kw_only=True)
class MediaPlaylist:
    """A media playlist: segments in playback order.

    `version` is the EXT-X-VERSION to declare; None declares the lowest one the features need
    (`build.minimum_version`). `parse` always sets it (to 1 when the tag is absent, RFC 8216
    section 4.3.1.2).
    """

    target_duration: int
    segments: tuple[Segment, ...]
    media_sequence: int = 0
    init: InitSection | None = None
    playlist_type: PlaylistType | None = None
    endlist: bool = False
    version: int | None = None
    independent_segments: bool = False

    @property
    def total_duration(self) -> float:
        """Seconds of media in the playlist."""
        return math.fsum(segment.duration for segment in self.segments)


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One variant stream of a master playlist: EXT-X-STREAM-INF and its URI line.

    Bit rates are bits per second: `bandwidth` the peak segment bit rate and
    `average_bandwidth` the average over the whole stream (RFC 8216 section 4.3.4.2).
    `frame_rate` is written to three decimals, as that section asks.
    `stable_variant_id` is STABLE-VARIANT-ID (draft-pantos-hls-rfc8216bis section 4.4.6.2).
    """

    uri: str
    bandwidth: int
    average_bandwidth: int | None = None
    resolution: tuple[int, int] | None = None
    codecs: str | None = None
    frame_rate: float | None = None
    stable_variant_id: str | None = None


@dataclass(frozen=True)
class MasterPlaylist:
    """A master (multivariant) playlist. `version` works as in `MediaPlaylist`."""

    variants: tuple[Variant, ...]
    independent_segments: bool = False
    version: int | None = None
