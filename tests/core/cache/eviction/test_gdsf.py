"""GDSF: priority = L + frequency / size; the lowest goes and its priority becomes L."""

import random

from hypothesis import given
from hypothesis import strategies as st

from core.cache.eviction import create_eviction_policy
from core.cache.eviction.gdsf import GDSFPolicy
from core.cache.index import CacheIndex


def test_a_large_rarely_requested_object_goes_before_an_older_small_one() -> None:
    index = CacheIndex(120, GDSFPolicy(120))
    index.insert("small", 10, now=0)
    index.insert("large", 100, now=1)
    assert index.insert("new", 20, now=2) == ["large"]  # LRU would evict "small"


def test_frequency_outweighs_recency_for_objects_of_one_size() -> None:
    index = CacheIndex(30, GDSFPolicy(30))
    for key in "abc":
        index.insert(key, 10, now=0)
    index.lookup("a", now=1)
    index.lookup("a", now=1)
    index.lookup("c", now=1)
    assert index.insert("d", 10, now=2) == ["b"]
    # L rose to b's priority, 0.1: d starts at 0.1 + 1/10, level with c's 0 + 2/10, and c's
    # priority is the older one.
    assert index.insert("e", 10, now=3) == ["c"]
    assert index.insert("f", 10, now=4) == ["d"]
    assert "a" in index


def test_inflation_ages_out_an_object_popular_long_ago() -> None:
    index = CacheIndex(100, GDSFPolicy(100))
    index.insert("old", 10, now=0)
    for _ in range(9):
        index.lookup("old", now=0)  # priority 1.0; newcomers start at L + 0.1
    evicted: list[str] = []
    for step in range(1, 200):
        evicted += index.insert(f"new{step}", 10, now=step)
        if "old" in evicted:
            break
    assert "old" in evicted  # plain LFU would keep it forever


def test_ties_go_oldest_first() -> None:
    policy = GDSFPolicy(100)
    for key in "abc":
        policy.on_insert(key, 10, now=0)
    assert [policy.evict(now=1) for _ in range(3)] == ["a", "b", "c"]


def test_registered_as_gdsf() -> None:
    assert isinstance(create_eviction_policy("gdsf", capacity_bytes=1), GDSFPolicy)


class GDSFModel:
    """GDSF straight from the definition: scan every object for the lowest priority."""

    def __init__(self) -> None:
        self.inflation = 0.0
        self.clock = 0
        # key -> (priority, last update, frequency, size)
        self.objects: dict[str, tuple[float, int, int, int]] = {}

    def insert(self, key: str, size: int) -> None:
        self._set(key, 1, max(size, 1))

    def hit(self, key: str) -> None:
        _, _, frequency, size = self.objects[key]
        self._set(key, frequency + 1, size)

    def evict(self) -> str:
        key = min(self.objects, key=lambda k: self.objects[k][:2])
        self.inflation = self.objects.pop(key)[0]
        return key

    def _set(self, key: str, frequency: int, size: int) -> None:
        self.clock += 1
        self.objects[key] = (self.inflation + frequency / size, self.clock, frequency, size)


def replay_against_model(operations: list[tuple[str, str, int]]) -> None:
    policy = GDSFPolicy(1000)
    model = GDSFModel()
    for operation, key, size in operations:
        if operation == "evict" and model.objects:
            assert policy.evict(now=0) == model.evict()
        elif operation == "remove" and key in model.objects:
            policy.on_remove(key)
            del model.objects[key]
        elif key in model.objects:
            policy.on_hit(key, now=0)
            model.hit(key)
        else:
            policy.on_insert(key, size, now=0)
            model.insert(key, size)
        assert len(policy) == len(model.objects)
    while model.objects:
        assert policy.evict(now=0) == model.evict()


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["request", "request", "evict", "remove"]),
            st.sampled_from("abcdefgh"),
            st.integers(min_value=0, max_value=50),
        ),
        max_size=100,
    )
)
def test_matches_the_definition(operations: list[tuple[str, str, int]]) -> None:
    replay_against_model(operations)


def test_matches_the_definition_across_heap_rebuilds() -> None:
    # Long enough for stale heap entries to outnumber live ones many times over.
    rng = random.Random(7)
    operations = [
        (
            rng.choice(["request"] * 6 + ["evict", "remove"]),
            f"k{rng.randrange(300)}",
            rng.randrange(1, 100),
        )
        for _ in range(20_000)
    ]
    replay_against_model(operations)
