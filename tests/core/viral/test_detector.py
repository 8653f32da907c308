"""The trending detector on a hand-driven clock: steady videos stay quiet, bursts trend fast,
old videos need bursts proportional to their baseline, counters merge exactly when split."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from core.viral import DecayedCounter, DetectorSettings, ShardedCounter, TrendingDetector

FAST = DetectorSettings(short_tau=5.0, long_tau=120.0, min_views=10.0)


def steady(
    detector: TrendingDetector, video: str, rate: float, start: float, seconds: float
) -> list[object]:
    """Plays at `rate`/s for `seconds`; every trend it caused."""
    trends: list[object] = []
    for n in range(int(rate * seconds)):
        trends += detector.observe(video, "play_start", start + n / rate, viewer=f"u{n}")
    return trends


def burst(detector: TrendingDetector, video: str, count: int, at: float) -> int | None:
    """`count` plays within one second; after how many the video trended (None: never)."""
    for n in range(count):
        if detector.observe(video, "play_start", at + n / count, viewer=f"b{n}"):
            return n + 1
    return None


def test_decayed_counter_halves_every_half_life() -> None:
    counter = DecayedCounter(tau=10.0 / math.log(2))
    counter.add(8.0, 100.0)
    assert math.isclose(counter.read(110.0), 4.0)
    assert math.isclose(counter.read(130.0), 1.0)
    counter.add(1.0, 130.0)
    assert math.isclose(counter.read(130.0), 2.0)


@given(st.lists(st.tuples(st.floats(0, 50), st.text(max_size=8)), min_size=1, max_size=300))
def test_a_split_counter_reads_as_the_unsplit_one(steps: list[tuple[float, str]]) -> None:
    """Hot-key splitting is invisible to readers: the merged shards equal one counter."""
    split = ShardedCounter(tau=10.0, split_rate=0.5, shards=4)
    whole = DecayedCounter(tau=10.0)
    now = 0.0
    for gap, viewer in steps:
        now += gap / 10
        split.add(1.0, now, viewer)
        whole.add(1.0, now)
    assert math.isclose(split.read(now), whole.read(now), rel_tol=1e-9)
    if len(steps) > 20 and now < 2.0:  # 20 events in 2 s with tau 10 s: past 0.5/s
        assert split.split


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(0.05, 20.0), jitter=st.floats(0.0, 0.5))
def test_an_established_steady_video_never_trends(rate: float, jitter: float) -> None:
    detector = TrendingDetector(FAST)
    # Its first minutes may look like a hot new video; what matters is the steady state.
    steady(detector, "v", rate, 0.0, 3 * FAST.long_tau)
    assert detector.trending(3 * FAST.long_tau) == []
    t = 3 * FAST.long_tau
    for n in range(int(rate * 2 * FAST.long_tau)):
        # Evenly spaced with a bounded wobble: a steady stream, not a burst.
        at = t + (n + jitter * ((n * 7919) % 3 - 1)) / rate
        assert detector.observe("v", "play_start", at, viewer=f"w{n}") == []


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(0.001, 0.05))
def test_a_video_no_busier_than_the_prior_never_trends(rate: float) -> None:
    detector = TrendingDetector(FAST)
    assert steady(detector, "v", rate, 0.0, 4 * FAST.long_tau) == []


@settings(max_examples=30, deadline=None)
@given(start=st.floats(0.0, 1e9))
def test_a_burst_on_a_new_video_trends_within_min_views(start: float) -> None:
    detector = TrendingDetector(FAST)
    trended_after = burst(detector, "v", 50, start)
    # min_views plays, and one or two more for the decay within the burst's second.
    assert trended_after is not None and trended_after <= FAST.min_views + 2
    trending = detector.trending(start + 1.0)
    assert [video for video, _ in trending] == ["v"]


def test_an_old_video_needs_a_burst_proportional_to_its_baseline() -> None:
    needed = {}
    for rate in (0.0, 1.0, 5.0):
        detector = TrendingDetector(FAST)
        start = 4 * FAST.long_tau
        if rate:
            steady(detector, "v", rate, 0.0, start)
        detector.trending(start)  # the warm-up's own spell, if any, is over
        needed[rate] = burst(detector, "v", 1000, start)
    assert needed[0.0] is not None and needed[0.0] <= FAST.min_views + 2
    # A baseline of rate * short_tau plays: about ratio times that, less what is there already.
    assert needed[1.0] is not None and needed[1.0] > needed[0.0]
    assert needed[5.0] is not None and needed[5.0] > 2 * 5.0 * FAST.short_tau


def test_trending_cools_down_and_is_listed_per_region() -> None:
    detector = TrendingDetector(FAST)
    for n in range(30):
        detector.observe("v", "play_start", 100.0 + n / 30, viewer=f"u{n}", region="eu")
    assert [v for v, _ in detector.trending(101.0, "eu")] == ["v"]
    assert [v for v, _ in detector.trending(101.0)] == ["v"]
    assert detector.trending(101.0, "us") == []
    assert detector.trending(101.0 + 10 * FAST.short_tau, "eu") == []
    assert detector.forget_idle(101.0 + 20 * FAST.long_tau) == 2
    assert len(detector) == 0


def test_aggregates_report_rates_per_view() -> None:
    detector = TrendingDetector(FAST)
    for n in range(10):
        detector.observe("v", "play_start", 10.0, viewer=f"u{n}")
    for kind, count in (("completion", 4), ("like", 2), ("share", 1)):
        for n in range(count):
            detector.observe("v", kind, 10.0, viewer=f"u{n}")
    detector.observe("v", "watch_time", 10.0, viewer="u0", amount=55.0)
    detector.observe("v", "impression", 10.0, viewer="u0")  # not aggregated
    figures = detector.aggregates("v", 10.0)
    assert figures is not None
    assert math.isclose(figures.views, 10.0)
    assert math.isclose(figures.completion_rate, 0.4)
    assert math.isclose(figures.like_rate, 0.2)
    assert math.isclose(figures.share_rate, 0.1)
    assert math.isclose(figures.watch_seconds_per_view, 5.5)
    assert math.isclose(figures.velocity, 10.0 / FAST.short_tau)
    assert detector.aggregates("other", 10.0) is None
