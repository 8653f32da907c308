"""The "viral" policy: store what is hot right now, and what decides how fast a swipe starts.

An edge should hold about the top 1% of recently requested videos and a regional node about the
top 10%; the long tail streams through uncached. Every request of a video (playlists, init,
segments) counts towards the video's exponentially decayed request rate (`DecayedRates`,
half-life `settings.half_life`), so a video's rate is its demand on the cache in requests/s,
and a viral video is recognised from the requests of all its objects together, long before any
one segment could prove itself.

`admit` says yes to:

- init segments and first segments (`ObjectRef.is_startup_critical`) of any video: they decide
  how fast a swipe starts playing, and they are what every view of a video asks for first;
- playlists: a few hundred bytes each and short-lived (max-age 2 s by default), so storing them
  costs almost nothing, and every view of a video needs them before any segment;
- objects outside `/v/` (`video_id` None): not video traffic (a favicon, a crossdomain.xml), few
  and small; they are not tracked, so they cannot dilute the videos' ranking;
- any other object of a hot video: one whose rate is at least the hot threshold, or which the
  origin hinted is trending in the last `TRENDING_HALF_LIVES` half-lives.

The hot threshold is `settings.hot_rate` when given (a fixed rate in requests/s). Otherwise it is
adaptive: the rate of the video at the top `HOT_FRACTION_BY_TIER[tier]` (1% at the edge, 10% at a
regional node) among the tracked videos, i.e. the videos requested in the last
`RECENT_HALF_LIVES` half-lives. A fixed rate would need retuning for every node size and every
hour of the day; a rank adapts to both, so the hot set stays about that share of what the node
currently sees. Never less than `MIN_HOT_COUNT` requests' worth of rate, so that a video is
never hot on no evidence (a new node's first few videos).

Cost: `observe` and `admit` are O(1), except that an `observe` now and then recomputes the
adaptive threshold over all n tracked videos (`DecayedRates.quantile_rate`: one pass, then a
heap selection). It does so once at least `half_life / RECOMPUTES_PER_HALF_LIFE` seconds
of `now` have passed (so that the threshold follows the traffic; decay alone moves every rate by
under 5% in that time) and at least n / `RECOMPUTE_WORK_PER_OBSERVATION` observations were made
since the last time, which bounds the amortised cost to a few rate evaluations per request
whatever the traffic. In between, the threshold is held. The one request that pays for a
recomputation waits for it: 2-4 ms for 10,000 tracked videos, 50-90 ms for 100,000 on a busy
2-core development VM.

A spike is admitted quickly: a video needs a decayed count of `threshold * half_life / ln 2`
requests to be hot (on the Zipf test workload, about 100 requests in 1.4 s at the edge with the
default half-life, a tenth of that at a regional node). It stops being admitted once its
rate has decayed below the threshold, `half_life * log2(peak rate / threshold)` seconds after the
spike ends, or `RECENT_HALF_LIVES` half-lives after its last request, whichever is first.
"""

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from core.cache.admission import AdmissionPolicy, AdmissionSettings, register_admission_policy
from core.cache.objects import ObjectKind, ObjectRef
from core.cache.popularity import DecayedRates

HOT_FRACTION_BY_TIER: Mapping[str, float] = MappingProxyType({"edge": 0.01, "regional": 0.10})
"""Share of the tracked videos that is hot by default, per tier."""
RECENT_HALF_LIVES = 4.0
"""A video not requested for this many half-lives is forgotten: it has decayed to 1/16."""
TRENDING_HALF_LIVES = 3.0
"""A trending hint keeps a video hot this long; afterwards its own requests must."""
RECOMPUTES_PER_HALF_LIFE = 16
"""The adaptive threshold is recomputed at most this many times per half-life of `now`."""
RECOMPUTE_WORK_PER_OBSERVATION = 8
"""A recomputation waits for (tracked videos / 8) observations: at most 8 rates are evaluated per
observation, amortised."""
MIN_HOT_COUNT = 1.0
"""The adaptive threshold is at least the rate of this many undecayed requests."""


@dataclass(frozen=True, slots=True)
class ViralStats:
    """A snapshot for metrics."""

    hot_threshold: float
    """Requests/s a video needs to be hot."""
    tracked_videos: int
    """Videos requested recently (the population the adaptive threshold ranks)."""
    hot_videos: int
    """Videos whose other segments are admitted now: hot by rate or trending."""
    trending_videos: int
    """Videos kept hot by a trending hint."""


class ViralAdmission(AdmissionPolicy):
    name = "viral"

    def __init__(self, settings: AdmissionSettings) -> None:
        try:
            self._hot_fraction = HOT_FRACTION_BY_TIER[settings.tier]
        except KeyError:
            known = ", ".join(sorted(HOT_FRACTION_BY_TIER))
            raise ValueError(f"unknown tier {settings.tier!r} (known: {known})") from None
        if settings.hot_rate is not None and not settings.hot_rate > 0:
            raise ValueError(f"hot_rate must be positive, not {settings.hot_rate}")
        half_life = settings.half_life
        self._videos = DecayedRates(
            half_life=half_life,
            max_keys=settings.tracked_keys,
            max_idle=RECENT_HALF_LIVES * half_life,
        )
        self._fixed_hot_rate = settings.hot_rate
        self._min_hot_rate = MIN_HOT_COUNT * math.log(2.0) / half_life
        self._adaptive_hot_rate = self._min_hot_rate
        self._recompute_period = half_life / RECOMPUTES_PER_HALF_LIFE
        self._recomputed_at: float | None = None
        self._observed_since_recompute = 0
        self._trending_window = TRENDING_HALF_LIVES * half_life
        self._max_trending = settings.tracked_keys
        # video -> end of its trending window; all windows are equally long, so (with `now` not
        # decreasing) the earliest to end is first.
        self._trending_until: OrderedDict[str, float] = OrderedDict()

    def observe(self, ref: ObjectRef, now: float) -> None:
        if ref.video_id is None:
            return
        self._videos.hit(ref.video_id, now)
        if self._fixed_hot_rate is not None:
            return
        self._observed_since_recompute += 1
        if self._recomputed_at is None or (
            now - self._recomputed_at >= self._recompute_period
            and self._observed_since_recompute * RECOMPUTE_WORK_PER_OBSERVATION >= len(self._videos)
        ):
            quantile = self._videos.quantile_rate(self._hot_fraction, now)
            self._adaptive_hot_rate = max(quantile, self._min_hot_rate)
            self._recomputed_at = now
            self._observed_since_recompute = 0

    def admit(self, ref: ObjectRef, size: int, now: float) -> bool:
        if ref.video_id is None or ref.kind is ObjectKind.PLAYLIST or ref.is_startup_critical:
            return True
        return self.is_hot(ref.video_id, now)

    def hint_trending(self, video_ids: Iterable[str], now: float) -> None:
        """Keep these videos hot for `TRENDING_HALF_LIVES` half-lives.

        Each also starts at least as hot as the coldest hot video, so it is tracked and ranked
        among the hot ones; after the window its own requests must keep it there.
        """
        trending = self._trending_until
        while trending and next(iter(trending.values())) <= now:
            trending.popitem(last=False)
        until = now + self._trending_window
        seed_rate = self.hot_threshold
        for video_id in video_ids:
            trending[video_id] = until
            trending.move_to_end(video_id)
            self._videos.raise_to(video_id, seed_rate, now)
        while len(trending) > self._max_trending:
            trending.popitem(last=False)

    @property
    def hot_threshold(self) -> float:
        """Requests/s a video needs to be hot: `hot_rate`, or the adaptive threshold."""
        if self._fixed_hot_rate is not None:
            return self._fixed_hot_rate
        return self._adaptive_hot_rate

    def is_hot(self, video_id: str, now: float) -> bool:
        """Whether `video_id`'s segments (beyond the startup ones) are admitted at `now`."""
        return (
            self._trending_until.get(video_id, -math.inf) > now
            or self._videos.rate(video_id, now) >= self.hot_threshold
        )

    def gauges(self, now: float) -> Mapping[str, float]:
        stats = self.stats(now)
        return {
            "hot_threshold": stats.hot_threshold,
            "tracked_videos": stats.tracked_videos,
            "hot_videos": stats.hot_videos,
            "trending_videos": stats.trending_videos,
        }

    def stats(self, now: float) -> ViralStats:
        """Threshold and counts at `now`. O(n) in the tracked videos: for metrics scrapes."""
        threshold = self.hot_threshold
        trending = {video for video, until in self._trending_until.items() if until > now}
        tracked = 0
        hot = set(trending)
        for video_id, rate in self._videos.rates(now):
            tracked += 1
            if rate >= threshold:
                hot.add(video_id)
        return ViralStats(
            hot_threshold=threshold,
            tracked_videos=tracked,
            hot_videos=len(hot),
            trending_videos=len(trending),
        )


register_admission_policy(ViralAdmission.name, ViralAdmission)
