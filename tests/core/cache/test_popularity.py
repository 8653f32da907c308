"""Decayed request rates: the rate math, lazy decay, bounded memory, quantiles and the hottest."""

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.cache.popularity import DecayedRates

HALF_LIFE = 10.0
ONE_REQUEST_RATE = math.log(2) / HALF_LIFE
"""The rate of a single request at the moment it arrives."""


def rates(max_keys: int = 1000, max_idle: float = math.inf) -> DecayedRates:
    return DecayedRates(half_life=HALF_LIFE, max_keys=max_keys, max_idle=max_idle)


def test_unknown_key_has_no_rate() -> None:
    assert rates().rate("never", 5.0) == 0.0


def test_one_request_is_one_request_worth_of_rate() -> None:
    tracker = rates()
    tracker.hit("a", 0.0)
    assert tracker.rate("a", 0.0) == pytest.approx(ONE_REQUEST_RATE)


@pytest.mark.parametrize("requests_per_second", [0.5, 1.0, 20.0, 500.0])
def test_a_steady_stream_converges_to_its_rate(requests_per_second: float) -> None:
    tracker = rates()
    gap = 1.0 / requests_per_second
    # Long enough for any start-up to have decayed to nothing (30 half-lives).
    hits = int(30 * HALF_LIFE / gap)
    for number in range(hits):
        tracker.hit("a", number * gap)
    just_after_hit = tracker.rate("a", (hits - 1) * gap)
    # Just after a hit the newest, undecayed request adds at most half a request's worth.
    assert just_after_hit == pytest.approx(requests_per_second, abs=ONE_REQUEST_RATE)
    # Averaged over a gap, the rate is the stream's rate.
    midway = tracker.rate("a", (hits - 0.5) * gap)
    assert midway == pytest.approx(requests_per_second, rel=0.01, abs=ONE_REQUEST_RATE / 2)


def test_a_steady_stream_climbs_like_one_minus_its_decay() -> None:
    tracker = rates()
    for number in range(1000):
        tracker.hit("a", number * 0.01)  # 100 requests/s for one half-life
    assert tracker.rate("a", 9.995) == pytest.approx(100 * 0.5, rel=0.01)


def test_silence_halves_the_rate_every_half_life() -> None:
    tracker = rates()
    for number in range(50):
        tracker.hit("a", 0.0 + number * 0.1)
    start = tracker.rate("a", 5.0)
    for half_lives in range(1, 6):
        assert tracker.rate("a", 5.0 + half_lives * HALF_LIFE) == pytest.approx(
            start / 2**half_lives
        )


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.floats(0.0, 5.0)),
        min_size=1,
        max_size=60,
    ),
    st.floats(0.0, 50.0),
)
def test_lazy_decay_equals_eager_decay(gaps: list[tuple[str, float]], extra: float) -> None:
    """Decaying a key only when touched gives what decaying every key at every step gives."""
    tracker = rates()
    eager: dict[str, float] = {}
    now = 0.0
    for key, gap in gaps:
        now += gap
        tracker.hit(key, now)
        eager = {k: count * 2 ** (-gap / HALF_LIFE) for k, count in eager.items()}
        eager[key] = eager.get(key, 0.0) + 1.0
    now += extra
    for key in "abc":
        expected = eager.get(key, 0.0) * 2 ** (-extra / HALF_LIFE) * ONE_REQUEST_RATE
        assert tracker.rate(key, now) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_time_going_backwards_counts_as_no_time() -> None:
    tracker = rates()
    tracker.hit("a", 10.0)
    tracker.hit("a", 5.0)
    assert tracker.rate("a", 10.0) == pytest.approx(2 * ONE_REQUEST_RATE)


def test_raise_to_gives_a_head_start_but_never_lowers() -> None:
    tracker = rates()
    tracker.raise_to("a", 3.0, 0.0)
    assert tracker.rate("a", 0.0) == pytest.approx(3.0)
    assert tracker.rate("a", HALF_LIFE) == pytest.approx(1.5)
    tracker.raise_to("a", 1.0, HALF_LIFE)
    assert tracker.rate("a", HALF_LIFE) == pytest.approx(1.5)


def test_memory_is_bounded_by_max_keys_dropping_the_least_recently_updated() -> None:
    tracker = rates(max_keys=3)
    for number, key in enumerate("abc"):
        tracker.hit(key, float(number))
    tracker.hit("a", 3.0)  # a is now the most recently updated; b the least
    tracker.hit("d", 4.0)
    assert len(tracker) == 3
    assert tracker.rate("b", 4.0) == 0.0
    assert {key for key, _ in tracker.rates(4.0)} == {"a", "c", "d"}


def test_memory_stays_bounded_under_many_keys() -> None:
    tracker = rates(max_keys=100)
    for number in range(10_000):
        tracker.hit(f"k{number}", number * 0.001)
        assert len(tracker) <= 100


def test_idle_keys_are_forgotten() -> None:
    tracker = rates(max_idle=4 * HALF_LIFE)
    for _ in range(100):
        tracker.hit("busy-then-silent", 0.0)
    tracker.hit("recent", 30.0)
    assert tracker.rate("busy-then-silent", 39.9) > 0
    # Reads never change anything, but an idle key already reads as forgotten.
    assert tracker.rate("busy-then-silent", 40.0) == 0.0
    assert [key for key, _ in tracker.rates(40.0)] == ["recent"]
    assert len(tracker) == 2
    # The next write drops it from memory.
    tracker.hit("recent", 40.0)
    assert len(tracker) == 1


@pytest.mark.parametrize(
    ("fraction", "expected_rank"),
    [(0.01, 1), (0.05, 5), (0.10, 10), (0.5, 50), (1.0, 100), (0.001, 1)],
)
def test_quantile_rate_is_the_rate_of_the_top_fraction(fraction: float, expected_rank: int) -> None:
    tracker = rates()
    # Key "k<r>" gets 101 - r requests: rank r (1 = hottest) has a distinct rate.
    for rank in range(1, 101):
        for _ in range(101 - rank):
            tracker.hit(f"k{rank}", 0.0)
    threshold = tracker.quantile_rate(fraction, 0.0)
    assert threshold == pytest.approx(tracker.rate(f"k{expected_rank}", 0.0))
    at_least = [key for key, rate in tracker.rates(0.0) if rate >= threshold]
    assert len(at_least) == expected_rank


def test_quantile_rate_decays_with_the_rates_and_skips_forgotten_keys() -> None:
    tracker = rates(max_idle=4 * HALF_LIFE)
    for _ in range(20):
        tracker.hit("old", 0.0)
    tracker.hit("new", 35.0)
    assert tracker.quantile_rate(0.5, 35.0) == pytest.approx(20 * ONE_REQUEST_RATE / 2**3.5)
    assert tracker.quantile_rate(0.5, 40.0) == pytest.approx(ONE_REQUEST_RATE / 2**0.5)


def test_quantile_of_nothing_is_zero() -> None:
    assert rates().quantile_rate(0.01, 0.0) == 0.0


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_quantile_fraction_must_be_a_share(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        rates().quantile_rate(fraction, 0.0)


def test_hottest_lists_the_top_keys_hottest_first() -> None:
    tracker = rates()
    generator = random.Random(7)
    counts = {f"k{number}": generator.randrange(1, 50) for number in range(200)}
    for key, count in counts.items():
        for _ in range(count):
            tracker.hit(key, 0.0)
    top = tracker.hottest(5, 0.0)
    expected = sorted(counts.values(), reverse=True)[:5]
    assert [rate for _, rate in top] == pytest.approx([c * ONE_REQUEST_RATE for c in expected])
    assert all(counts[key] * ONE_REQUEST_RATE == pytest.approx(rate) for key, rate in top)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="half_life"):
        DecayedRates(half_life=0.0, max_keys=1)
    with pytest.raises(ValueError, match="max_keys"):
        DecayedRates(half_life=1.0, max_keys=0)
    with pytest.raises(ValueError, match="max_idle"):
        DecayedRates(half_life=1.0, max_keys=1, max_idle=0.0)
