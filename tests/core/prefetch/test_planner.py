"""The adaptive planner and the fixed baseline, decision by decision."""

from core.prefetch import (
    AdaptivePlanner,
    FixedPolicy,
    PlannerSettings,
    PlaybackProgress,
    Swiped,
    SwipeModel,
)
from tests.core.prefetch.feeds import complete, drain, feed


def quick_swiper() -> SwipeModel:
    model = SwipeModel()
    for _ in range(50):
        model.observe(1.0, 30.0, completed=False)
    return model


def test_the_playing_segment_comes_first_even_for_a_quick_swiper() -> None:
    planner = AdaptivePlanner(swipes=quick_swiper())
    feed(planner, 30, 30, 30)
    first = planner.next_fetch(0.0)
    assert first is not None and (first.video, first.segment) == (0, 0)
    complete(planner, first, 3_000_000)
    second = planner.next_fetch(0.0)
    assert second is not None and (second.video, second.segment) == (0, 1)


def test_a_low_buffer_on_a_slow_link_gets_a_rung_that_arrives_in_time() -> None:
    planner = AdaptivePlanner()
    feed(planner, 30)
    complete(planner, planner.state.request(0, 0, 2), 900_000)
    fetch = planner.next_fetch(0.0)
    # 2 s buffered at 900 kbit/s: the 1 Mbit/s rung (2 Mbit) would take 2.2 s.
    assert fetch is not None and (fetch.segment, fetch.rendition) == (1, 0)


def test_the_bitrate_keeps_a_safety_margin_below_the_estimate() -> None:
    for bps, rung in [(1_200_000, 0), (1_300_000, 1), (3_000_000, 2)]:
        planner = AdaptivePlanner()
        feed(planner, 60)
        for fetch in drain(planner, bps, limit=5):
            last = fetch
        assert last.rendition == rung, bps


def test_a_quick_swiper_gets_the_next_videos_started_before_a_deep_buffer() -> None:
    planner = AdaptivePlanner(swipes=quick_swiper())
    feed(planner, 40, 40, 40, 40, 40, 40, 40)
    fetches = drain(planner, 5_000_000)
    current = [f for f in fetches if f.video == 0]
    assert max(f.segment for f in current) * 2 <= PlannerSettings().danger_s
    assert {f.video for f in fetches if f.segment == 0} >= {1, 2}


def test_a_viewer_who_watches_to_the_end_gets_no_speculative_prefetch() -> None:
    model = SwipeModel()
    for _ in range(100):
        model.observe(60.0, 60.0, completed=True)
    planner = AdaptivePlanner(swipes=model)
    feed(planner, 60, 60, 60)
    fetches = drain(planner, 5_000_000)
    assert fetches and all(f.video == 0 for f in fetches)


def test_the_buffer_cap_is_never_exceeded() -> None:
    settings = PlannerSettings(horizon_s=60, buffer_cap_s=8, threshold=0.0)
    planner = AdaptivePlanner(settings)
    feed(planner, 60, 60, 60, 60)
    for position in (0.0, 3.1, 11.0, 30.5):
        planner.handle(PlaybackProgress(0, position, position))
        for fetch in drain(planner, 10_000_000):
            ahead = fetch.segment * 2 - (position if fetch.video == 0 else 0)
            assert ahead <= settings.buffer_cap_s, (position, fetch)
        assert planner.state.buffered_s() <= settings.buffer_cap_s + 2


def test_a_swipe_teaches_the_model_and_moves_the_playhead() -> None:
    planner = AdaptivePlanner()
    feed(planner, 30, 30)
    before = planner.swipes.survival(2.0)
    planner.handle(Swiped(0, 1.2, completed=False, now=1.2))
    assert planner.swipes.survival(2.0) < before
    assert (planner.state.current, planner.state.position_s) == (1, 0.0)
    fetch = planner.next_fetch(1.2)
    assert fetch is not None and (fetch.video, fetch.segment) == (1, 0)


def test_the_planner_waits_past_the_end_of_the_feed() -> None:
    planner = AdaptivePlanner()
    feed(planner, 10)
    planner.handle(Swiped(0, 10.0, completed=True, now=10.0))
    assert planner.next_fetch(10.0) is None


def test_the_fixed_policy_finishes_the_video_then_one_megabyte_of_each_of_the_next_four() -> None:
    policy = FixedPolicy()
    feed(policy, 20, 30, 30, 30, 30, 30)
    fetches = drain(policy, 3_000_000)
    assert [f.segment for f in fetches if f.video == 0] == list(range(10))
    for video in range(1, 5):
        sizes = [f.size for f in fetches if f.video == video]
        assert sum(sizes) >= policy.first_bytes > sum(sizes[:-1])
    assert not [f for f in fetches if f.video == 5]
    # One rung per video, from the last throughput sample (3 Mbit/s: the top rung).
    assert {f.rendition for f in fetches if f.video > 0} == {2}
