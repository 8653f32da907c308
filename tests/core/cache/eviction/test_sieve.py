"""SIEVE: a FIFO queue, a visited bit and a hand that sweeps from the oldest to the newest."""

from hypothesis import given
from hypothesis import strategies as st

from core.cache.eviction import create_eviction_policy
from core.cache.eviction.sieve import SievePolicy
from core.cache.index import CacheIndex


def test_a_visited_object_is_kept_and_the_hand_moves_on() -> None:
    index = CacheIndex(3, SievePolicy(3))
    for key in "abc":
        index.insert(key, 1, now=0)
    index.lookup("a", now=1)
    # The hand starts at the oldest object, a: visited, so it keeps its place (bit cleared).
    assert index.insert("d", 1, now=2) == ["b"]
    # The hand stayed at c, not back at the oldest: c is visited, so d, the newest, goes (LRU
    # would evict a). The hand passes the newest object and wraps around to the oldest.
    index.lookup("c", now=3)
    assert index.insert("e", 1, now=4) == ["d"]
    # From the oldest again: a (no longer visited), then c (bit cleared on the last sweep), then e,
    # which was inserted behind the hand and so had a whole sweep to be hit.
    assert index.insert("f", 1, now=5) == ["a"]
    assert index.insert("g", 1, now=6) == ["c"]
    assert index.insert("h", 1, now=7) == ["e"]


def test_a_popular_object_survives_a_scan_of_one_hit_wonders() -> None:
    index = CacheIndex(4, SievePolicy(4))
    index.insert("hot", 1, now=0)
    for step in range(1, 40):
        index.lookup("hot", now=step)
        if index.insert(f"scan{step}", 1, now=step):
            assert "hot" in index
    assert "hot" in index


def test_removing_the_object_at_the_hand_moves_the_hand_to_the_next_newer() -> None:
    policy = SievePolicy(10)
    for key in "abcd":
        policy.on_insert(key, 1, now=0)
    policy.on_hit("a", now=0)
    assert policy.evict(now=0) == "b"  # the hand now rests at c
    policy.on_remove("c")
    assert policy.evict(now=0) == "d"


def test_registered_as_sieve() -> None:
    assert isinstance(create_eviction_policy("sieve", capacity_bytes=1), SievePolicy)


class SieveModel:
    """SIEVE as the paper's pseudocode: a list from the oldest to the newest and a hand."""

    def __init__(self) -> None:
        self.queue: list[str] = []
        self.visited: dict[str, bool] = {}
        self.hand: str | None = None  # None: at the oldest object

    def insert(self, key: str) -> None:
        self.queue.append(key)
        self.visited[key] = False

    def hit(self, key: str) -> None:
        self.visited[key] = True

    def remove(self, key: str) -> None:
        position = self.queue.index(key)
        if self.hand == key:
            self.hand = self._newer(position)
        del self.queue[position]
        del self.visited[key]

    def evict(self) -> str:
        position = 0 if self.hand is None else self.queue.index(self.hand)
        while self.visited[self.queue[position]]:
            self.visited[self.queue[position]] = False
            position = (position + 1) % len(self.queue)
        victim = self.queue[position]
        self.hand = self._newer(position)
        self.remove(victim)
        return victim

    def _newer(self, position: int) -> str | None:
        return self.queue[position + 1] if position + 1 < len(self.queue) else None


OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["request", "evict", "remove"]), st.sampled_from("abcdefg")),
    max_size=80,
)


@given(OPERATIONS)
def test_matches_the_papers_pseudocode(operations: list[tuple[str, str]]) -> None:
    policy = SievePolicy(10)
    model = SieveModel()
    for operation, key in operations:
        if operation == "evict" and model.queue:
            assert policy.evict(now=0) == model.evict()
        elif operation == "remove" and key in model.visited:
            policy.on_remove(key)
            model.remove(key)
        elif key in model.visited:
            policy.on_hit(key, now=0)
            model.hit(key)
        else:
            policy.on_insert(key, 1, now=0)
            model.insert(key)
        assert len(policy) == len(model.queue)
    assert [policy.evict(now=0) for _ in list(model.queue)] == [
        model.evict() for _ in list(model.queue)
    ]
