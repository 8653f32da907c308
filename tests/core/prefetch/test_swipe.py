"""The swipe-time model: a smoothed per-second hazard learned online, completions censored."""

import math
import random

import pytest

from core.prefetch import SwipeModel


def test_the_prior_gives_about_30_percent_of_swipes_within_2_s() -> None:
    model = SwipeModel()
    assert 1 - model.survival(2.0) == pytest.approx(0.29, abs=0.01)
    assert model.survival(0.0) == 1.0
    assert model.survival(1.0) < model.survival(0.5) < 1.0


def test_a_viewer_who_swipes_fast_is_learned_within_a_few_dozen_swipes() -> None:
    model = SwipeModel()
    for _ in range(40):
        model.observe(0.7, 30.0, completed=False)
    assert 1 - model.survival(1.0) > 0.8


def test_a_viewer_who_watches_everything_to_the_end_is_learned_too() -> None:
    model = SwipeModel()
    for _ in range(60):
        model.observe(20.0, 20.0, completed=True)
    assert model.survival(20.0) > 0.7


def test_a_completion_says_nothing_past_the_end_of_the_video() -> None:
    """Censoring: a 5-s video watched to its end leaves the hazard of second 10 at the prior."""
    model = SwipeModel()
    before = model.hazard(10)
    for _ in range(30):
        model.observe(5.0, 5.0, completed=True)
    assert model.hazard(10) == before
    assert model.hazard(3) < before


def test_the_remaining_time_distribution_sums_to_one_and_ends_at_the_end() -> None:
    model = SwipeModel()
    rng = random.Random(3)
    for _ in range(50):
        duration = rng.uniform(5, 60)
        model.observe(rng.uniform(0, duration), duration, completed=rng.random() < 0.2)
    for duration, position in [(14.3, 0.0), (14.3, 5.2), (60.0, 59.9), (9.0, 9.0)]:
        pmf = model.remaining_pmf(duration, position)
        assert math.fsum(pmf) == pytest.approx(1.0)
        assert len(pmf) == round(max(duration - position, 0.0)) + 1
        assert all(p >= 0 for p in pmf)


@pytest.mark.parametrize("bad", [(), (1.0,), (-0.1, 0.2)])
def test_a_prior_must_be_a_list_of_hazards_below_one(bad: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        SwipeModel(prior_hazard=bad)
