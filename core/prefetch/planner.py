"""The adaptive prefetch planner: fetch what the viewer is likely to need soon, no more.

Every upcoming chunk has a need time: when playback would reach it. For the video on screen
that is its start minus the playhead, if the viewer is still watching by then; for the videos
after it, the rest of the current viewing plus the whole viewings in between (a convolution of
the viewer's learned swipe-time distributions, Dashlet's method) plus the chunk's offset. A chunk
is fetched only when the probability that it is needed within the look-ahead horizon passes a
threshold: a chunk needed later can still be fetched later, and one that is never needed is
wasted bytes. Among the chunks that qualify, the most likely one goes first. Before any of that,
the current video's buffer is kept above a danger level at the lowest rung, so prefetching never
starves what is playing. Bitrate: the highest rung under a safety fraction of the estimate.
"""

from dataclasses import dataclass, field

from core.prefetch.model import Event, FeedAppended, Fetch, Swiped
from core.prefetch.state import FeedState, choose_rendition
from core.prefetch.swipe import SwipeModel


@dataclass(frozen=True)
class PlannerSettings:
    """Tuning of the adaptive planner (the defaults are what the trace evaluation uses)."""

    safety: float = 0.8
    danger_s: float = 6.0
    horizon_s: float = 10.0
    threshold: float = 0.5
    window: int = 4
    buffer_cap_s: float = 30.0


def _convolve(a: list[float], b: list[float], size: int) -> list[float]:
    """The distribution of the sum of two 1-s-binned times, truncated to `size` bins."""
    out = [0.0] * size
    for i, pa in enumerate(a[:size]):
        if pa:
            for j, pb in enumerate(b[: size - i]):
                out[i + j] += pa * pb
    return out


@dataclass
class AdaptivePlanner:
    """One viewer's planner; its swipe model learns from that viewer's swipes."""

    settings: PlannerSettings = field(default_factory=PlannerSettings)
    swipes: SwipeModel = field(default_factory=SwipeModel)
    state: FeedState = field(default_factory=FeedState)
    # Per upcoming video (offset from the current one): the binned time spent in the videos
    # between the current one and it; valid until the next swipe or feed page.
    _between: list[list[float]] = field(default_factory=list)

    def handle(self, event: Event) -> None:
        if isinstance(event, Swiped):
            video = self.state.videos[event.video]
            self.swipes.observe(event.watched_s, video.duration_s, event.completed)
        if isinstance(event, Swiped | FeedAppended):
            self._between = []
        self.state.handle(event)

    def next_fetch(self, now: float) -> Fetch | None:
        state, settings = self.state, self.settings
        if state.current >= len(state.videos):
            return None
        current = state.videos[state.current]
        budget = state.bandwidth.estimate_bps() * settings.safety
        playing = state.next_missing(state.current, current.segment_at(state.position_s))
        buffered = state.buffered_s()
        if playing is not None and buffered < settings.danger_s:
            return state.request(state.current, playing, self._safe_rendition(playing, buffered))
        best: tuple[float, int, int] | None = None
        for video, segment, probability in self._candidates(playing):
            if probability >= settings.threshold and (best is None or probability > best[0]):
                best = (probability, video, segment)
        if best is None:
            return None
        _, video, segment = best
        return state.request(video, segment, choose_rendition(state.videos[video], budget))

    def _safe_rendition(self, segment: int, buffered_s: float) -> int:
        """The best rung (within the budget) whose chunk arrives before the buffer runs dry."""
        state = self.state
        video = state.videos[state.current]
        estimate = state.bandwidth.estimate_bps()
        best = choose_rendition(video, estimate * self.settings.safety)
        fits = [
            i
            for i in range(best + 1)
            if video.renditions[i].segment_bytes[segment] * 8 / estimate <= buffered_s
        ]
        return fits[-1] if fits else 0

    def _candidates(self, playing: int | None) -> list[tuple[int, int, float]]:
        """(video, segment, P(needed within the horizon)) of the next chunk of each video."""
        state, horizon = self.state, self.settings.horizon_s
        current = state.videos[state.current]
        here = self.swipes.survival(state.position_s)
        out = []
        if playing is not None:
            start = current.segment_start(playing)
            if start - state.position_s <= min(horizon, self.settings.buffer_cap_s):
                out.append((state.current, playing, self.swipes.survival(start) / here))
        bins = int(horizon) + 1
        remaining = self.swipes.remaining_pmf(current.duration_s, state.position_s)
        for offset, between in enumerate(self._between_distributions(bins), start=1):
            video = state.current + offset
            segment = state.next_missing(video)
            if segment is None:
                continue
            start = state.videos[video].segment_start(segment)
            if start >= self.settings.buffer_cap_s or start > horizon:
                continue
            arrival = _convolve(remaining, between, bins)
            reached = sum(arrival[: int(horizon - start) + 1])
            out.append((video, segment, reached * self.swipes.survival(start)))
        return out

    def _between_distributions(self, bins: int) -> list[list[float]]:
        """For each upcoming video in the window, the time spent in the videos before it."""
        state = self.state
        last = min(state.current + self.settings.window, len(state.videos) - 1)
        if not self._between:
            between = [1.0]
            for video in range(state.current + 1, last + 1):
                self._between.append(between)
                whole = self.swipes.remaining_pmf(state.videos[video].duration_s, 0.0)
                between = _convolve(between, whole, bins)
        return self._between
