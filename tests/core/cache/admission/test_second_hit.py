"""The "second-hit" policy: the first request streams through, the second is stored."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.cache.admission import AdmissionSettings, create_admission_policy
from core.cache.admission.second_hit import HASH_COUNT, BloomFilter, SecondHitAdmission
from core.cache.objects import ObjectRef, classify

SEGMENT = classify("/v/abc/720p/seg_00003.m4s")
OTHER_SEGMENT = classify("/v/abc/720p/seg_00004.m4s")
RESET = 600.0


def policy(bits: int = 1 << 20) -> SecondHitAdmission:
    settings = AdmissionSettings(doorkeeper_bits=bits, doorkeeper_reset=RESET)
    built = create_admission_policy("second-hit", settings)
    assert isinstance(built, SecondHitAdmission)
    return built


def request(doorkeeper: SecondHitAdmission, ref: ObjectRef, now: float) -> bool:
    """What the cache node does on a miss: observe the request, then ask about storing it."""
    doorkeeper.observe(ref, now)
    return doorkeeper.admit(ref, 1000, now)


def test_first_request_streams_through_and_second_is_stored() -> None:
    doorkeeper = policy()
    assert not request(doorkeeper, SEGMENT, 0.0)
    assert request(doorkeeper, SEGMENT, 1.0)
    assert request(doorkeeper, SEGMENT, 2.0)


def test_paths_are_counted_separately() -> None:
    doorkeeper = policy()
    request(doorkeeper, SEGMENT, 0.0)
    assert not request(doorkeeper, OTHER_SEGMENT, 1.0)


def test_a_second_request_arriving_while_the_first_is_fetched_admits_it() -> None:
    # Slow origin: both requests are observed before the first fetch completes.
    doorkeeper = policy()
    doorkeeper.observe(SEGMENT, 0.0)
    doorkeeper.observe(SEGMENT, 0.1)
    assert doorkeeper.admit(SEGMENT, 1000, 0.5)


def test_forgets_everything_every_reset_period() -> None:
    doorkeeper = policy()
    request(doorkeeper, SEGMENT, 0.0)
    assert request(doorkeeper, SEGMENT, RESET - 1)
    # The period that started at the first request is over: its paths are forgotten.
    assert not doorkeeper.admit(SEGMENT, 1000, RESET)
    assert not request(doorkeeper, SEGMENT, RESET + 1)
    assert request(doorkeeper, SEGMENT, RESET + 2)


def test_decisions_are_the_same_in_every_process() -> None:
    """Golden: blake2b, not the per-process salted hash(), picks the bits."""
    small = BloomFilter(64)
    for number in range(8):
        small.add(f"/v/seen{number}/seg.m4s")
    claimed = [n for n in range(100) if f"/v/unseen{n}/seg.m4s" in small]
    assert claimed == [44, 74, 85]


@given(st.lists(st.text(min_size=1, max_size=40), max_size=50))
def test_bloom_filter_never_forgets_an_added_key(keys: list[str]) -> None:
    # A tiny filter saturates, which is fine: only false positives may result.
    bloom = BloomFilter(256)
    for key in keys:
        bloom.add(key)
    assert all(key in bloom for key in keys)


@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=20), st.floats(0.0, 3 * RESET)),
        min_size=1,
        max_size=40,
    )
)
def test_a_path_requested_twice_since_the_last_reset_is_always_admitted(
    requests: list[tuple[str, float]],
) -> None:
    doorkeeper = policy(bits=512)
    now = 0.0
    counts_since_reset: dict[str, int] = {}
    period_started: float | None = None  # like the policy's: the first request starts it
    for name, gap in requests:
        now += gap
        if period_started is None:
            period_started = now
        elif now - period_started >= RESET:
            counts_since_reset, period_started = {}, now
        ref = classify(f"/v/{name}/seg_00001.m4s")
        admitted = request(doorkeeper, ref, now)
        counts_since_reset[ref.path] = counts_since_reset.get(ref.path, 0) + 1
        if counts_since_reset[ref.path] >= 2:
            assert admitted


def test_false_positive_rate_matches_the_documented_formula() -> None:
    # 1% at 100,000 paths per 2**20 bits; the same load factor on a smaller filter.
    bits, paths = 1 << 16, 100_000 >> 4
    bloom = BloomFilter(bits)
    for number in range(paths):
        bloom.add(f"/v/seen/{number}")
    unseen = 20_000
    false_positives = sum(f"/v/unseen/{number}" in bloom for number in range(unseen))
    expected = (1 - math.exp(-HASH_COUNT * paths / bits)) ** HASH_COUNT
    assert expected == pytest.approx(0.0101, abs=0.0001)
    assert false_positives / unseen == pytest.approx(expected, rel=0.25)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="doorkeeper_reset"):
        create_admission_policy("second-hit", AdmissionSettings(doorkeeper_reset=0.0))
    with pytest.raises(ValueError, match="8 bits"):
        BloomFilter(4)
