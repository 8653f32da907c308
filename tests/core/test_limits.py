"""core.limits: per-client token buckets, bounded memory, the burst + rate * t guarantee."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.limits import RateLimiter


def test_burst_then_refused_then_refilled_at_the_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after("a", 0.0) == pytest.approx(0.5)
    assert not limiter.allow("a", 0.4)
    assert limiter.allow("a", 0.5)  # one token every 1 / rate seconds
    assert not limiter.allow("a", 0.5)
    assert limiter.retry_after("a", 0.75) == pytest.approx(0.25)
    # Idle long enough, the bucket is full again, never fuller.
    assert [limiter.allow("a", 100.0) for _ in range(4)] == [True, True, True, False]


def test_clients_have_buckets_of_their_own() -> None:
    limiter = RateLimiter(rate=1.0, burst=2)
    assert [limiter.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert [limiter.allow("b", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.retry_after("c", 0.0) == 0.0


def test_refused_requests_take_no_token() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.allow("a", 0.0)
    for step in range(9):
        assert not limiter.allow("a", step * 0.1)
    assert limiter.allow("a", 1.0)  # hammering while refused did not push the refill back


def test_a_clock_stepping_back_refills_nothing() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.allow("a", 10.0)
    assert not limiter.allow("a", 5.0)
    assert not limiter.allow("a", 10.5)
    assert limiter.allow("a", 11.0)


def test_idle_full_buckets_are_forgotten() -> None:
    limiter = RateLimiter(rate=10.0, burst=5)  # full again 0.5 s after the last request
    for client in range(100):
        limiter.allow(client, 0.0)
    assert len(limiter) == 100
    # Every later request sweeps up to two idle buckets: 50 requests forget all 100.
    for _ in range(50):
        limiter.allow("busy", 1.0)
    assert len(limiter) == 1


def test_memory_is_bounded_by_max_clients_dropping_the_least_recently_used() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=3)
    for client in "abc":
        assert limiter.allow(client, 0.0)
    assert not limiter.allow("a", 0.0)  # "a" is now the most recently used
    assert limiter.allow("d", 0.0)  # drops "b", the least recently used
    assert len(limiter) == 3
    assert not limiter.allow("a", 0.0)
    assert not limiter.allow("c", 0.0)
    assert limiter.allow("b", 0.0)  # forgotten: a fresh bucket (the price of the bound)


@pytest.mark.parametrize(
    ("rate", "burst", "max_clients"), [(0.0, 1, 1), (-1.0, 1, 1), (1.0, 0, 1), (1.0, 1, 0)]
)
def test_invalid_settings_are_refused(rate: float, burst: int, max_clients: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst, max_clients)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(min_value=0.1, max_value=100.0),
    burst=st.integers(min_value=1, max_value=20),
    max_clients=st.integers(min_value=1, max_value=4),
    requests=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=2.0),  # gap since the previous request
            st.integers(min_value=0, max_value=5),  # which client (more than max_clients)
        ),
        max_size=200,
    ),
)
def test_never_more_than_burst_plus_rate_times_t_in_any_window(
    rate: float, burst: int, max_clients: int, requests: list[tuple[float, int]]
) -> None:
    """For every client and every window [t_i, t_j] of its allowed requests: at most
    burst + rate * (t_j - t_i) allowed. Clients beyond max_clients come and go; the property
    is checked for the clients that were never dropped while their bucket was not full."""
    limiter = RateLimiter(rate, burst, max_clients)
    allowed: dict[int, list[float]] = {}
    dropped_unfull: set[int] = set()
    now = 0.0
    for gap, client in requests:
        now += gap
        held_before = {key: list(bucket) for key, bucket in limiter._buckets.items()}
        if limiter.allow(client, now):
            allowed.setdefault(client, []).append(now)
        for key, (tokens, last) in held_before.items():
            assert isinstance(key, int)
            if key not in limiter._buckets and tokens + (now - last) * rate < burst:
                dropped_unfull.add(key)  # dropped by the max_clients bound, not idle
        assert len(limiter) <= max_clients
    for client, times in allowed.items():
        if client in dropped_unfull:
            continue
        for i in range(len(times)):
            for j in range(i, len(times)):
                window = times[j] - times[i]
                assert j - i + 1 <= math.floor(burst + rate * window + 1e-6)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.1, max_value=100.0),
    burst=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=200),
)
def test_a_patient_client_is_never_refused(rate: float, burst: int, gaps: list[float]) -> None:
    """A client that waits `retry_after` before each request is always allowed."""
    limiter = RateLimiter(rate, burst)
    now = 0.0
    for gap in gaps:
        now += gap
        now += limiter.retry_after("a", now) + 1e-6
        assert limiter.allow("a", now)
