"""LRU: evict the object whose last request is oldest.

The baseline every other policy is measured against. An `OrderedDict` keeps the keys in recency
order (least recent first), so every operation is O(1).
"""

from collections import OrderedDict

from core.cache.eviction import EvictionPolicy, register_eviction_policy


class LRUPolicy(EvictionPolicy):
    """Least recently used first; the capacity is not needed to order keys."""

    __slots__ = ("_recency",)
    name = "lru"

    def __init__(self, capacity_bytes: int) -> None:
        self._recency: OrderedDict[str, None] = OrderedDict()

    def on_insert(self, key: str, size: int, now: float) -> None:
        self._recency[key] = None

    def on_hit(self, key: str, now: float) -> None:
        self._recency.move_to_end(key)

    def on_remove(self, key: str) -> None:
        del self._recency[key]

    def evict(self, now: float) -> str:
        key, _ = self._recency.popitem(last=False)
        return key

    def __len__(self) -> int:
        return len(self._recency)


register_eviction_policy(LRUPolicy.name, LRUPolicy)
