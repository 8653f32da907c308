"""GreedyDual-Size-Frequency (Cherkasova, "Improving WWW Proxies Performance with
Greedy-Dual-Size-Frequency Caching Policy", HP Labs HPL-98-69, 1998).

Each object has the priority `L + frequency * cost / size` and the lowest priority is evicted.
The cost is 1 for every object, which optimises the object hit ratio: a small object frees few
bytes but its hit counts as much as a large one's, so large, rarely requested objects go first.
`L`, the inflation value, is the priority of the last victim; objects hit recently are priced
from a higher `L`, which ages out objects that were popular long ago (GreedyDual's recency part).
The frequency starts at 1 on insertion and counts hits while the object stays cached.

A binary heap of (priority, stamp, key) with lazy deletion: a hit pushes a fresh entry and leaves
the old one to be skipped when it surfaces (its stamp no longer matches); the heap is rebuilt
when stale entries outnumber live ones, so every operation is O(log n) amortised. The stamp is a
counter, so equal priorities are evicted oldest first and runs are deterministic.
"""

import heapq

from core.cache.eviction import EvictionPolicy, register_eviction_policy

COST = 1.0
"""Every miss costs the same: the policy maximises the object hit ratio."""
_MIN_HEAP_FOR_REBUILD = 1024


class _Entry:
    __slots__ = ("frequency", "priority", "size", "stamp")

    def __init__(self, size: int, priority: float, stamp: int) -> None:
        self.frequency = 1
        self.size = size
        self.priority = priority
        self.stamp = stamp


class GDSFPolicy(EvictionPolicy):
    __slots__ = ("_entries", "_heap", "_inflation", "_stamp")
    name = "gdsf"

    def __init__(self, capacity_bytes: int) -> None:
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._inflation = 0.0
        self._stamp = 0

    def on_insert(self, key: str, size: int, now: float) -> None:
        # A zero-byte object (an empty playlist) is priced as one byte rather than infinity.
        size = max(size, 1)
        self._stamp += 1
        priority = self._inflation + COST / size
        self._entries[key] = _Entry(size, priority, self._stamp)
        self._push(priority, self._stamp, key)

    def on_hit(self, key: str, now: float) -> None:
        entry = self._entries[key]
        entry.frequency += 1
        self._stamp += 1
        entry.stamp = self._stamp
        entry.priority = self._inflation + entry.frequency * COST / entry.size
        self._push(entry.priority, self._stamp, key)

    def on_remove(self, key: str) -> None:
        del self._entries[key]

    def evict(self, now: float) -> str:
        entries = self._entries
        heap = self._heap
        while True:
            priority, stamp, key = heapq.heappop(heap)
            entry = entries.get(key)
            if entry is not None and entry.stamp == stamp:
                del entries[key]
                self._inflation = priority
                return key

    def __len__(self) -> int:
        return len(self._entries)

    def _push(self, priority: float, stamp: int, key: str) -> None:
        """Queue `key`'s new priority; its entry in `_entries` is already up to date."""
        heap = self._heap
        if len(heap) > _MIN_HEAP_FOR_REBUILD and len(heap) > 2 * len(self._entries):
            # Mostly stale: rebuild from the live entries, this key's new priority included.
            heap[:] = [(entry.priority, entry.stamp, k) for k, entry in self._entries.items()]
            heapq.heapify(heap)
        else:
            heapq.heappush(heap, (priority, stamp, key))


register_eviction_policy(GDSFPolicy.name, GDSFPolicy)
