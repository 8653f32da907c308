"""The bookkeeping every prefetch policy shares: the feed, the playhead, what is held or in flight.

Policies differ only in what they fetch next; what a chunk is, where the viewer is and how fast
the link is are kept once, here, from the same events.
"""

from dataclasses import dataclass, field
from typing import Protocol

from core.prefetch.bandwidth import BandwidthEstimator
from core.prefetch.model import (
    DownloadCompleted,
    Event,
    FeedAppended,
    Fetch,
    PlaybackProgress,
    Swiped,
    Video,
)


class PrefetchPolicy(Protocol):
    """What the player (peer_sdk) and the evaluator drive: events in, one fetch at a time out."""

    def handle(self, event: Event) -> None: ...

    def next_fetch(self, now: float) -> Fetch | None:
        """The chunk to download now, or None to wait (asked again after the next event)."""
        ...


def choose_rendition(video: Video, budget_bps: float) -> int:
    """The highest rung whose bitrate fits the budget, else the lowest (something must play)."""
    fitting = [i for i, r in enumerate(video.renditions) if r.bitrate_bps <= budget_bps]
    return fitting[-1] if fitting else 0


@dataclass
class FeedState:
    """Feed, playhead, held and in-flight chunks, and the throughput estimate."""

    videos: list[Video] = field(default_factory=list)
    current: int = 0
    position_s: float = 0.0
    held: dict[tuple[int, int], Fetch] = field(default_factory=dict)
    pending: dict[tuple[int, int], Fetch] = field(default_factory=dict)
    bandwidth: BandwidthEstimator = field(default_factory=BandwidthEstimator)

    def handle(self, event: Event) -> None:
        match event:
            case FeedAppended(videos=videos):
                self.videos.extend(videos)
            case PlaybackProgress(video=video, position_s=position):
                self.current, self.position_s = video, position
            case DownloadCompleted(fetch=fetch, elapsed_s=elapsed):
                self.pending.pop((fetch.video, fetch.segment), None)
                self.held[fetch.video, fetch.segment] = fetch
                self.bandwidth.add(fetch.size, elapsed)
            case Swiped(video=video):
                self.current, self.position_s = video + 1, 0.0

    def has(self, video: int, segment: int) -> bool:
        """Held or already requested: either way, never to be requested again."""
        return (video, segment) in self.held or (video, segment) in self.pending

    def next_missing(self, video: int, from_segment: int = 0) -> int | None:
        """The first segment at or after `from_segment` neither held nor in flight."""
        for segment in range(from_segment, self.videos[video].segment_count):
            if not self.has(video, segment):
                return segment
        return None

    def buffered_s(self) -> float:
        """Seconds of the current video held contiguously ahead of the playhead."""
        video = self.videos[self.current]
        segment = video.segment_at(self.position_s)
        while segment < video.segment_count and (self.current, segment) in self.held:
            segment += 1
        return max(min(video.segment_start(segment), video.duration_s) - self.position_s, 0.0)

    def requested_bytes(self, video: int) -> int:
        """Bytes of `video` held or in flight."""
        return sum(
            fetch.size
            for chunks in (self.held, self.pending)
            for (v, _), fetch in chunks.items()
            if v == video
        )

    def request(self, video: int, segment: int, rendition: int) -> Fetch:
        """Build the fetch and count it as in flight."""
        size = self.videos[video].renditions[rendition].segment_bytes[segment]
        fetch = Fetch(video, segment, rendition, size)
        self.pending[video, segment] = fetch
        return fetch
