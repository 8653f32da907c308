"""LRU: the least recently requested object goes first."""

from hypothesis import given
from hypothesis import strategies as st

from core.cache.eviction import create_eviction_policy
from core.cache.eviction.lru import LRUPolicy
from core.cache.index import CacheIndex


def test_the_least_recently_requested_object_is_evicted() -> None:
    index = CacheIndex(3, LRUPolicy(3))
    for key in "abc":
        index.insert(key, 1, now=0)
    assert index.lookup("a", now=1)
    assert index.insert("d", 1, now=2) == ["b"]
    assert index.insert("e", 1, now=3) == ["c"]
    assert index.insert("f", 1, now=4) == ["a"]


def test_a_removed_key_leaves_the_order() -> None:
    policy = LRUPolicy(10)
    for key in "abc":
        policy.on_insert(key, 1, now=0)
    policy.on_remove("a")
    assert len(policy) == 2
    assert [policy.evict(now=1), policy.evict(now=1)] == ["b", "c"]


def test_registered_as_lru() -> None:
    assert isinstance(create_eviction_policy("lru", capacity_bytes=1), LRUPolicy)


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.booleans()), max_size=60))
def test_matches_a_list_model(requests: list[tuple[str, bool]]) -> None:
    """Against the textbook model: a list ordered by last use, oldest first."""
    policy = LRUPolicy(10)
    model: list[str] = []
    for key, evict_first in requests:
        if evict_first and model:
            assert policy.evict(now=0) == model.pop(0)
        if key in model:
            policy.on_hit(key, now=0)
            model.remove(key)
        else:
            policy.on_insert(key, 1, now=0)
        model.append(key)
    assert [policy.evict(now=0) for _ in model] == model
