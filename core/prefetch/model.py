"""What the prefetch planner knows about the feed, what it is told, and what it decides.

The feed is a short list of upcoming videos, each a ladder of renditions cut into aligned
segments; a chunk is one segment of one video, named by its position in the feed so that the
planner, peer_sdk and the simulator agree on it without parsing playlists. Events carry `now`
(the planner never reads a clock); the one decision is a `Fetch` of one chunk, or `None` (wait).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Rendition:
    """One rung of a video's ladder: its nominal bitrate and the exact size of every segment."""

    bitrate_bps: int
    segment_bytes: tuple[int, ...]


@dataclass(frozen=True)
class Video:
    """A feed item: duration, segment duration and its ladder (renditions lowest first, aligned).

    Segments are `segment_s` long except the last, which holds what remains of `duration_s`.
    """

    video_id: str
    duration_s: float
    segment_s: float
    renditions: tuple[Rendition, ...]

    def __post_init__(self) -> None:
        if not self.renditions or self.duration_s <= 0 or self.segment_s <= 0:
            raise ValueError("a video needs a positive duration, segment length and a rendition")
        rates = [r.bitrate_bps for r in self.renditions]
        if rates != sorted(rates):
            raise ValueError("renditions must be listed lowest bitrate first")
        if any(len(r.segment_bytes) != self.segment_count for r in self.renditions):
            raise ValueError("every rendition must have one size per segment")

    @property
    def segment_count(self) -> int:
        """Whole segments plus a shorter last one; a float remainder below 1 ms is rounding."""
        whole, rest = divmod(self.duration_s, self.segment_s)
        return int(whole) + (1 if rest > 1e-3 else 0)

    def segment_start(self, segment: int) -> float:
        return segment * self.segment_s

    def segment_at(self, position_s: float) -> int:
        """The segment playing at `position_s` (the last one at or past the end)."""
        return min(int(position_s // self.segment_s), self.segment_count - 1)


@dataclass(frozen=True)
class Fetch:
    """Download segment `segment` of the feed's video number `video` in rendition `rendition`."""

    video: int
    segment: int
    rendition: int
    size: int


@dataclass(frozen=True)
class FeedAppended:
    """More videos at the end of the feed (the feed service's next page)."""

    videos: tuple[Video, ...]


@dataclass(frozen=True)
class PlaybackProgress:
    """The player is at `position_s` of feed video `video` (the one on screen)."""

    video: int
    position_s: float
    now: float


@dataclass(frozen=True)
class DownloadCompleted:
    """A fetch finished: `size` bytes in `elapsed_s` seconds, request latency included.

    Both policies learn their throughput samples from these; the chunk is now held.
    """

    fetch: Fetch
    elapsed_s: float
    now: float


@dataclass(frozen=True)
class Swiped:
    """The viewer left feed video `video` after watching `watched_s` seconds of it.

    `completed` says they reached its end (a censored watch time for the swipe model, not a
    swipe at the end); either way the next feed video is on screen at position 0.
    """

    video: int
    watched_s: float
    completed: bool
    now: float


Event = FeedAppended | PlaybackProgress | DownloadCompleted | Swiped
