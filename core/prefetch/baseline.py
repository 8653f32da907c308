"""The TikTok-style fixed prefetch policy, the baseline the adaptive planner is measured against.

As Dashlet modelled TikTok (../shared/reference/prefetch_origin_sim.md, section 1.1): download
the video on screen to its end, then the first 1,024,000 bytes of each of the next 4 videos, and
nothing more until the viewer moves on. Each video's bitrate is fixed when its first chunk is
requested, from the last throughput sample. Chunks are whole segments, so "the first 1 MB" is
the shortest prefix of segments that reaches it.
"""

from dataclasses import dataclass, field

from core.prefetch.model import Event, Fetch
from core.prefetch.state import FeedState, choose_rendition


@dataclass
class FixedPolicy:
    """Finish the current video, then the first `first_bytes` of each of the next `ahead`."""

    first_bytes: int = 1_024_000
    ahead: int = 4
    safety: float = 1.0
    state: FeedState = field(default_factory=FeedState)
    _rendition: dict[int, int] = field(default_factory=dict)

    def handle(self, event: Event) -> None:
        self.state.handle(event)

    def next_fetch(self, now: float) -> Fetch | None:
        state = self.state
        if state.current >= len(state.videos):
            return None
        current = state.videos[state.current]
        segment = state.next_missing(state.current, current.segment_at(state.position_s))
        if segment is not None:
            return self._request(state.current, segment)
        for video in range(
            state.current + 1, min(state.current + 1 + self.ahead, len(state.videos))
        ):
            segment = state.next_missing(video)
            if segment is not None and state.requested_bytes(video) < self.first_bytes:
                return self._request(video, segment)
        return None

    def _request(self, video: int, segment: int) -> Fetch:
        if video not in self._rendition:
            sample = self.state.bandwidth.last_sample_bps
            budget = self.state.bandwidth.default_bps if sample is None else sample
            self._rendition[video] = choose_rendition(
                self.state.videos[video], budget * self.safety
            )
        return self.state.request(video, segment, self._rendition[video])
