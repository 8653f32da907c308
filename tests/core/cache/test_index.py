"""The byte-bounded cache index, alone and with every registered eviction policy."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.cache.eviction import create_eviction_policy, eviction_policy_names
from core.cache.eviction.lru import LRUPolicy
from core.cache.index import CacheIndex, ObjectTooLarge

POLICIES = eviction_policy_names()


def test_every_builtin_policy_is_registered() -> None:
    assert POLICIES == ["gdsf", "lru", "s3fifo", "sieve", "wtinylfu"]


def test_an_unknown_policy_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown eviction policy 'arc' \(known: gdsf, lru, "):
        create_eviction_policy("arc", capacity_bytes=100)


def test_lookup_insert_and_remove() -> None:
    index = CacheIndex(100, LRUPolicy(100))
    assert not index.lookup("a", now=0)
    assert index.insert("a", 60, now=0) == []
    assert index.lookup("a", now=1)
    assert "a" in index
    assert index.size_of("a") == 60
    assert index.size_of("b") is None
    assert (len(index), index.used_bytes, index.capacity_bytes) == (1, 60, 100)
    assert index.remove("a")
    assert not index.remove("a")
    assert (len(index), index.used_bytes) == (0, 0)


def test_evicts_until_the_newcomer_fits_and_reports_victims_in_order() -> None:
    index = CacheIndex(100, LRUPolicy(100))
    for key in "abcd":
        index.insert(key, 25, now=0)
    assert index.insert("big", 60, now=1) == ["a", "b", "c"]
    assert set(index) == {"d", "big"}
    assert index.used_bytes == 85


def test_an_object_filling_the_whole_cache_fits() -> None:
    index = CacheIndex(100, LRUPolicy(100))
    index.insert("a", 1, now=0)
    assert index.insert("whole", 100, now=1) == ["a"]
    assert index.used_bytes == 100


def test_an_object_larger_than_the_cache_is_refused_without_evicting() -> None:
    index = CacheIndex(100, LRUPolicy(100))
    index.insert("a", 50, now=0)
    with pytest.raises(ObjectTooLarge, match="101 bytes") as refused:
        index.insert("huge", 101, now=1)
    assert refused.value.key == "huge"
    assert (refused.value.size, refused.value.capacity_bytes) == (101, 100)
    assert set(index) == {"a"}
    # Replacing with a version too large leaves even the old version in place.
    with pytest.raises(ObjectTooLarge):
        index.insert("a", 101, now=2)
    assert index.size_of("a") == 50


def test_replacing_a_key_frees_its_old_bytes_first() -> None:
    index = CacheIndex(100, LRUPolicy(100))
    index.insert("a", 60, now=0)
    index.insert("b", 40, now=0)
    # The old 60 bytes of a go first (not an eviction), so only b must make room for 90.
    assert index.insert("a", 90, now=1) == ["b"]
    assert index.size_of("a") == 90
    assert index.used_bytes == 90


def test_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="capacity_bytes"):
        CacheIndex(0, LRUPolicy(0))
    policy = LRUPolicy(10)
    policy.on_insert("a", 1, now=0)
    with pytest.raises(ValueError, match="start empty"):
        CacheIndex(10, policy)
    with pytest.raises(ValueError, match="negative"):
        CacheIndex(10, LRUPolicy(10)).insert("a", -1, now=0)


def test_zero_byte_objects_are_cached() -> None:
    for name in POLICIES:
        index = CacheIndex(10, create_eviction_policy(name, capacity_bytes=10))
        index.insert("empty", 0, now=0)
        index.insert("full", 10, now=0)
        assert index.lookup("full", now=1)
        assert index.used_bytes == 10


CAPACITY = 200
KEY_NAMES = [f"k{number}" for number in range(12)]
KEYS = st.sampled_from(KEY_NAMES)
# Mostly a few percent of the cache, sometimes most of it, sometimes more than all of it.
SIZES = st.one_of(
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=0, max_value=CAPACITY + 20),
)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("request"), KEYS, SIZES),
        st.tuples(st.just("insert"), KEYS, SIZES),  # replaces when present
        st.tuples(st.just("remove"), KEYS, st.just(0)),
    ),
    max_size=200,
)


def replay_checking_invariants(name: str, operations: list[tuple[str, str, int]]) -> None:
    """Run requests (lookup, insert on a miss), replacements and removals through an index."""
    policy = create_eviction_policy(name, capacity_bytes=CAPACITY)
    index = CacheIndex(CAPACITY, policy)
    for now, (operation, key, size) in enumerate(operations):
        if operation == "remove":
            was_cached = key in index
            assert index.remove(key) == was_cached
            assert key not in index
        elif operation == "request" and index.lookup(key, now):
            pass
        elif size > CAPACITY:
            sizes_before = {cached: index.size_of(cached) for cached in index}
            with pytest.raises(ObjectTooLarge):
                index.insert(key, size, now)
            assert {cached: index.size_of(cached) for cached in index} == sizes_before
        else:
            keys_before = set(index)
            evicted = index.insert(key, size, now)
            # Victims were cached (not the newcomer), each once, and are gone now.
            assert len(set(evicted)) == len(evicted)
            assert set(evicted) <= keys_before - {key}
            assert not set(evicted) & set(index)
            assert index.size_of(key) == size
        assert 0 <= index.used_bytes <= index.capacity_bytes
        assert index.used_bytes == sum(index.size_of(cached) or 0 for cached in index)
        assert len(policy) == len(index)
    # The policy tracks exactly the index's keys: draining it returns each of them once.
    drained = [policy.evict(now=len(operations)) for _ in range(len(policy))]
    assert sorted(drained) == sorted(index)
    assert len(policy) == 0


@pytest.mark.parametrize("name", POLICIES)
@settings(max_examples=150, deadline=None)
@given(operations=OPERATIONS)
def test_invariants_under_random_operations(
    name: str, operations: list[tuple[str, str, int]]
) -> None:
    replay_checking_invariants(name, operations)


@pytest.mark.parametrize("name", POLICIES)
def test_invariants_over_a_long_skewed_run(name: str) -> None:
    # Long and skewed enough to reach the deep states (SIEVE's wrapped hand, W-TinyLFU's
    # protected overflow, GDSF's heap rebuilds) that short examples rarely do.
    rng = random.Random(name)
    operations = [
        (
            rng.choices(["request", "insert", "remove"], weights=[90, 5, 5])[0],
            KEY_NAMES[min(int(rng.paretovariate(1.0)) - 1, len(KEY_NAMES) - 1)],
            rng.choice([rng.randrange(1, 40), rng.randrange(CAPACITY + 20)]),
        )
        for _ in range(4000)
    ]
    replay_checking_invariants(name, operations)
