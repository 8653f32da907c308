"""W-TinyLFU: a 1% window LRU, a segmented main LRU and a frequency sketch guarding the door."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.cache.eviction import create_eviction_policy
from core.cache.eviction.wtinylfu import (
    INITIAL_SKETCH_WIDTH,
    MAX_COUNT,
    SAMPLES_PER_COUNTER,
    FrequencySketch,
    WTinyLFUPolicy,
    key_hash,
)
from core.cache.index import CacheIndex

# 1000 bytes: the window's share is 10 bytes, main's 990 (protected 792).
CAPACITY = 1000


def index_with_an_incumbent(incumbent_hits: int) -> CacheIndex:
    """Main holds `incumbent` (990 bytes); the window holds `newcomer` (10 bytes)."""
    index = CacheIndex(CAPACITY, WTinyLFUPolicy(CAPACITY))
    index.insert("incumbent", 990, now=0)
    for _ in range(incumbent_hits):
        index.lookup("incumbent", now=1)
    index.insert("newcomer", 10, now=2)
    return index


def test_a_newcomer_less_frequent_than_mains_victim_is_rejected() -> None:
    index = index_with_an_incumbent(incumbent_hits=2)
    # Room for "next": the incumbent moves from the window to main (which has room), then the
    # newcomer leaves the window and loses the contest against it, 1 request against 3.
    assert index.insert("next", 10, now=3) == ["newcomer"]
    assert "incumbent" in index


def test_a_newcomer_more_frequent_than_mains_victim_displaces_it() -> None:
    index = index_with_an_incumbent(incumbent_hits=2)
    index.insert("next", 10, now=3)
    for _ in range(5):
        index.lookup("next", now=4)
    assert index.insert("another", 10, now=5) == ["incumbent"]
    assert "next" in index


def test_a_tie_keeps_the_incumbent() -> None:
    index = index_with_an_incumbent(incumbent_hits=0)
    assert index.insert("next", 10, now=3) == ["newcomer"]


def test_a_hit_in_probation_protects_the_object() -> None:
    index = CacheIndex(CAPACITY, WTinyLFUPolicy(CAPACITY))
    for key in "abc":
        index.insert(key, 300, now=0)
    assert index.insert("d", 300, now=1) == ["a"]  # window drained into main, whose oldest goes
    index.lookup("b", now=2)  # probation -> protected
    assert index.insert("e", 300, now=3) == ["c"]


def test_protected_overflow_is_demoted_to_probation() -> None:
    policy = WTinyLFUPolicy(CAPACITY)
    for key in "wpqr":
        policy.on_insert(key, 300, now=0)
    # w, p and q fill main; r finds no room and loses the contest to w (a tie).
    assert policy.evict(now=1) == "r"
    for key in "wpq":
        policy.on_hit(key, now=2)  # three promotions; protected holds two, so w goes back
    assert policy.evict(now=3) == "w"


def test_registered_as_wtinylfu() -> None:
    assert isinstance(create_eviction_policy("wtinylfu", capacity_bytes=1), WTinyLFUPolicy)


def test_the_sketch_counts_up_to_fifteen() -> None:
    sketch = FrequencySketch()
    hashed = key_hash("popular")
    assert sketch.estimate(hashed) == 0
    for expected in range(1, MAX_COUNT + 3):
        sketch.increment(hashed)
        assert sketch.estimate(hashed) == min(expected, MAX_COUNT)


def test_the_sketch_halves_every_counter_after_its_sample() -> None:
    sketch = FrequencySketch()
    popular, other = key_hash("popular"), key_hash("other")
    for _ in range(12):
        sketch.increment(popular)
    assert sketch.estimate(popular) == 12
    sample = SAMPLES_PER_COUNTER * INITIAL_SKETCH_WIDTH
    for _ in range(sample - 12 - 1):
        sketch.increment(other)
    assert sketch.estimate(popular) == 12
    sketch.increment(other)  # the sample's last increment triggers the reset
    assert sketch.estimate(popular) == 6


def test_the_sketch_width_is_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        FrequencySketch(100)


@given(
    st.lists(st.text(max_size=8), min_size=1, max_size=200),
    st.integers(min_value=1, max_value=5000),
)
def test_growing_the_sketch_keeps_every_estimate(keys: list[str], objects: int) -> None:
    sketch = FrequencySketch()
    for key in keys:
        sketch.increment(key_hash(key))
    before = {key: sketch.estimate(key_hash(key)) for key in keys}
    sketch.ensure_capacity(objects)
    assert sketch.width >= objects
    assert {key: sketch.estimate(key_hash(key)) for key in keys} == before


def test_the_sketch_grows_with_the_number_of_objects_not_bytes() -> None:
    policy = WTinyLFUPolicy(capacity_bytes=1 << 40)
    for number in range(3 * INITIAL_SKETCH_WIDTH):
        policy.on_insert(f"object{number}", 1 << 20, now=0)
    sketch_width = policy._sketch.width
    assert 3 * INITIAL_SKETCH_WIDTH <= sketch_width <= 6 * INITIAL_SKETCH_WIDTH
