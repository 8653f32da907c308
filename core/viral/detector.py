"""Per-video windowed aggregates and the trending detector.

Each video keeps two decayed view counters: a short window (`short_tau`, seconds: "how fast
now") and a long one (`long_tau`, tens of minutes: "how fast usually"), and long-window
counters of its engagement (completions, likes, shares, comments, watch seconds). A view is a
`play_start`.

The test is acceleration against the video's own baseline, normalised by age. The baseline
rate is the long window's rate, but a video younger than that window has not filled it: the
unobserved part is filled with `prior_rate`, the rate of a typical new video,

    baseline = (long_views + prior_rate * long_tau * exp(-age / long_tau)) / long_tau

so a new video is judged against what is usual for new videos, and an old one against its own
history. The short window expects `E = baseline * short_tau` views; it holds `S`. The score is a
Poisson z-score, `z = (S - E) / sqrt(E + 1)`, and a video enters the trending set when
`S >= min_views`, `z >= z_enter` and `S >= ratio * E` (a relative jump, so a video with a high
baseline needs a proportionally larger burst), and leaves it when `z < z_exit` (hysteresis:
a burst that levels off does not flap in and out). A burst of `min_views` plays within a few
seconds is enough for a new video; an old video needs `ratio` times its usual short-window
views. Counters decay, so nothing needs a timer: every read is exact at the `now` it is given.

Scopes: every event counts in the global scope (`""`) and, when it names one, in its region's,
so `trending(now, region)` answers per region. A video first seen by this detector is as old
as its first event here; what a restart forgets, the prior stands in for.
"""

import math
from dataclasses import dataclass, field

from core.viral.counters import DecayedCounter, ShardedCounter

VIEW = "play_start"
WATCH_TIME = "watch_time"
ENGAGEMENTS = frozenset({VIEW, "completion", "like", "share", "comment", WATCH_TIME})
"""Event types the detector aggregates; others (impressions, skips, follows) are ignored."""
_COUNTED = sorted(ENGAGEMENTS - {VIEW})
GLOBAL = ""


@dataclass(frozen=True)
class DetectorSettings:
    short_tau: float = 10.0
    long_tau: float = 1800.0
    prior_rate: float = 0.05
    min_views: float = 20.0
    z_enter: float = 4.0
    z_exit: float = 1.0
    ratio: float = 3.0
    split_rate: float = 500.0
    shards: int = 8
    forget_below: float = 0.01
    """Decayed long-window views under which an idle video is forgotten."""


@dataclass(frozen=True)
class Aggregates:
    """One video's figures in one scope at one instant."""

    views: float
    """Decayed views in the long window."""
    velocity: float
    """Views/s in the short window."""
    baseline: float
    """Views/s expected from the video's history (age-normalised)."""
    completion_rate: float
    like_rate: float
    share_rate: float
    watch_seconds_per_view: float
    score: float
    trending: bool


@dataclass(frozen=True)
class Trend:
    """A video that has just entered a scope's trending set."""

    video: str
    scope: str
    score: float


@dataclass
class _Video:
    first_seen: float
    short_views: ShardedCounter
    long_views: ShardedCounter
    engagement: dict[str, DecayedCounter]
    trending: bool = False


@dataclass
class TrendingDetector:
    settings: DetectorSettings = field(default_factory=DetectorSettings)
    _videos: dict[tuple[str, str], _Video] = field(default_factory=dict)
    _trending: dict[str, set[str]] = field(default_factory=dict)

    def observe(
        self,
        video: str,
        kind: str,
        now: float,
        *,
        viewer: str,
        region: str = "",
        amount: float = 1.0,
    ) -> list[Trend]:
        """Count one event (`amount`: seconds for `watch_time`); the scopes it made trend."""
        if kind not in ENGAGEMENTS:
            return []
        scopes = (GLOBAL, region) if region else (GLOBAL,)
        trends = []
        for scope in scopes:
            state = self._state(scope, video, now)
            if kind == VIEW:
                state.short_views.add(1.0, now, viewer)
                state.long_views.add(1.0, now, viewer)
            else:
                state.engagement[kind].add(amount, now)
            score = self._score(state, now)
            if not state.trending and self._enters(state, score, now):
                state.trending = True
                self._trending.setdefault(scope, set()).add(video)
                trends.append(Trend(video, scope, score))
        return trends

    def trending(self, now: float, region: str = "", limit: int = 100) -> list[tuple[str, float]]:
        """The scope's trending videos with their scores, highest first; those that cooled
        down leave the set here."""
        members = self._trending.get(region, set())
        ranked = []
        for video in list(members):
            state = self._videos[(region, video)]
            score = self._score(state, now)
            if score < self.settings.z_exit:
                state.trending = False
                members.discard(video)
            else:
                ranked.append((video, score))
        ranked.sort(key=lambda item: (-item[1], item[0]))
        return ranked[:limit]

    def aggregates(self, video: str, now: float, region: str = "") -> Aggregates | None:
        state = self._videos.get((region, video))
        if state is None:
            return None
        views = state.long_views.read(now)
        score = self._score(state, now)

        def per_view(kind: str) -> float:
            return state.engagement[kind].read(now) / views if views > 0 else 0.0

        return Aggregates(
            views=views,
            velocity=state.short_views.rate(now),
            baseline=self._baseline(state, now),
            completion_rate=min(1.0, per_view("completion")),
            like_rate=min(1.0, per_view("like")),
            share_rate=per_view("share"),
            watch_seconds_per_view=per_view(WATCH_TIME),
            score=score,
            trending=state.trending and score >= self.settings.z_exit,
        )

    def forget_idle(self, now: float) -> int:
        """Drop videos whose views decayed to almost nothing (bounded memory); how many.
        Such a video has long stopped trending, whether or not a read noticed it."""
        idle = [
            key
            for key, state in self._videos.items()
            if state.long_views.read(now) < self.settings.forget_below
        ]
        for scope, video in idle:
            del self._videos[(scope, video)]
            self._trending.get(scope, set()).discard(video)
        return len(idle)

    def __len__(self) -> int:
        return len(self._videos)

    def _state(self, scope: str, video: str, now: float) -> _Video:
        state = self._videos.get((scope, video))
        if state is None:
            s = self.settings
            state = _Video(
                first_seen=now,
                short_views=ShardedCounter(s.short_tau, s.split_rate, s.shards),
                long_views=ShardedCounter(s.long_tau, s.split_rate, s.shards),
                engagement={kind: DecayedCounter(s.long_tau) for kind in _COUNTED},
            )
            self._videos[(scope, video)] = state
        return state

    def _baseline(self, state: _Video, now: float) -> float:
        s = self.settings
        unfilled = math.exp(-max(0.0, now - state.first_seen) / s.long_tau)
        return (state.long_views.read(now) + s.prior_rate * s.long_tau * unfilled) / s.long_tau

    def _expected(self, state: _Video, now: float) -> float:
        return self._baseline(state, now) * self.settings.short_tau

    def _score(self, state: _Video, now: float) -> float:
        expected = self._expected(state, now)
        return (state.short_views.read(now) - expected) / math.sqrt(expected + 1.0)

    def _enters(self, state: _Video, score: float, now: float) -> bool:
        s = self.settings
        views = state.short_views.read(now)
        return (
            views >= s.min_views
            and score >= s.z_enter
            and views >= s.ratio * self._expected(state, now)
        )


__all__ = ["ENGAGEMENTS", "Aggregates", "DetectorSettings", "Trend", "TrendingDetector"]
