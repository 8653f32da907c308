"""The throughput estimate: hls.js's min of a fast and a slow duration-weighted EWMA."""

import pytest

from core.prefetch import BandwidthEstimator


def test_the_default_holds_until_the_first_sample() -> None:
    estimator = BandwidthEstimator(default_bps=700_000)
    assert estimator.estimate_bps() == 700_000
    estimator.add(0, 1.0)
    estimator.add(1000, 0.0)
    assert estimator.estimate_bps() == 700_000


def test_a_steady_link_is_estimated_exactly_from_one_sample() -> None:
    """Zero-bias correction: one sample is the estimate, not a fraction of it."""
    estimator = BandwidthEstimator()
    estimator.add(250_000, 1.0)
    assert estimator.estimate_bps() == pytest.approx(2_000_000)
    assert estimator.last_sample_bps == pytest.approx(2_000_000)


def test_a_drop_is_believed_at_once_and_a_spike_only_once_it_lasts() -> None:
    estimator = BandwidthEstimator()
    for _ in range(10):
        estimator.add(250_000, 1.0)
    estimator.add(25_000, 1.0)  # 200 kbit/s
    dropped = estimator.estimate_bps()
    assert dropped < 1_700_000
    estimator.add(2_500_000, 1.0)  # 20 Mbit/s, once
    assert estimator.estimate_bps() < 5_000_000
    for _ in range(60):
        estimator.add(2_500_000, 1.0)
    assert estimator.estimate_bps() == pytest.approx(20_000_000, rel=0.01)


def test_long_downloads_weigh_more_than_short_ones() -> None:
    long_first = BandwidthEstimator()
    long_first.add(1_000_000, 8.0)  # 1 Mbit/s for 8 s
    long_first.add(500_000, 0.5)  # 8 Mbit/s for 0.5 s
    assert long_first.estimate_bps() < 2_500_000
