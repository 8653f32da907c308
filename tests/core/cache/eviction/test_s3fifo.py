"""S3-FIFO: a small FIFO filters one-hit wonders, a main FIFO with reinsertion keeps the rest,
and a ghost queue brings back objects that were evicted too early."""

import pytest

from core.cache.eviction import create_eviction_policy
from core.cache.eviction.s3fifo import S3FIFOPolicy
from core.cache.index import CacheIndex

# 100 bytes: the small queue's share is 10, main's 90; objects of 10 bytes.
CAPACITY = 100
SIZE = 10


def filled_index() -> CacheIndex:
    index = CacheIndex(CAPACITY, S3FIFOPolicy(CAPACITY))
    for key in "abcdefghij":
        index.insert(key, SIZE, now=0)
    return index


def test_a_one_hit_wonder_leaves_before_older_objects_that_were_hit() -> None:
    index = filled_index()
    for key in "abcdefghi":
        index.lookup(key, now=1)
    # a..i were hit while in the small queue and move to main; j, the newest, was never hit.
    assert index.insert("k", SIZE, now=2) == ["j"]


def test_a_ghost_hit_goes_to_main_and_outlives_newer_one_hit_wonders() -> None:
    index = filled_index()
    assert index.insert("k", SIZE, now=1) == ["a"]  # FIFO among objects never hit
    assert index.insert("a", SIZE, now=2) == ["b"]  # a is remembered: it enters main
    evicted = [
        victim
        for step, key in enumerate("lmnopqrs")
        for victim in index.insert(key, SIZE, now=3 + step)
    ]
    assert evicted == list("cdefghij")
    assert "a" in index


def test_main_reinserts_hit_objects_with_the_counter_capped_at_three() -> None:
    policy = S3FIFOPolicy(CAPACITY)
    for key in "ab":
        policy.on_insert(key, SIZE, now=0)
    assert [policy.evict(now=0), policy.evict(now=0)] == ["a", "b"]
    for key in "ab":
        policy.on_insert(key, SIZE, now=1)  # both remembered: main holds a, b; small is empty
    for _ in range(5):
        policy.on_hit("a", now=2)
    for _ in range(3):
        policy.on_hit("b", now=2)
    # Both counters stop at 3, so a, reinserted first, runs out first despite its 5 hits.
    assert [policy.evict(now=3), policy.evict(now=3)] == ["a", "b"]


def test_the_ghost_remembers_about_as_many_bytes_as_main_holds() -> None:
    policy = S3FIFOPolicy(CAPACITY)
    keys = [f"k{number}" for number in range(10)]
    for key in keys:
        policy.on_insert(key, SIZE, now=0)
    assert [policy.evict(now=0) for _ in keys] == keys  # 100 bytes of ghosts: k0 is forgotten
    policy.on_insert("k9", SIZE, now=1)  # remembered: main
    policy.on_insert("k0", SIZE, now=1)  # forgotten: small, which is evicted first
    assert [policy.evict(now=2), policy.evict(now=2)] == ["k0", "k9"]


def test_removal_forgets_without_remembering() -> None:
    policy = S3FIFOPolicy(CAPACITY)
    policy.on_insert("a", SIZE, now=0)
    policy.on_remove("a")
    assert len(policy) == 0
    policy.on_insert("a", SIZE, now=1)
    policy.on_insert("b", SIZE, now=1)
    assert policy.evict(now=2) == "a"  # back in small, not promoted to main by a ghost


def test_promotion_threshold_is_configurable() -> None:
    policy = S3FIFOPolicy(CAPACITY, promote_after_hits=2)
    for key in "ab":
        policy.on_insert(key, SIZE, now=0)
    policy.on_hit("a", now=1)
    policy.on_hit("b", now=1)
    policy.on_hit("b", now=1)
    assert policy.evict(now=2) == "a"  # one hit is not enough any more; b moved to main
    with pytest.raises(ValueError, match="promote_after_hits"):
        S3FIFOPolicy(CAPACITY, promote_after_hits=0)


def test_registered_as_s3fifo() -> None:
    assert isinstance(create_eviction_policy("s3fifo", capacity_bytes=1), S3FIFOPolicy)
