"""W-TinyLFU (Einziger, Friedman, Manes, "TinyLFU: A Highly Efficient Cache Admission Policy",
ACM ToS 2017), as in Caffeine.

Layout, by bytes: a window LRU (1%) that every new object enters, and a main segmented LRU (the
other 99%) split into probation (20%) and protected (80%). A hit in probation promotes the object
to protected; protected overflow is demoted back to the newest end of probation. A count-min
sketch estimates every key's recent request frequency.

The admission contest: an object leaving the window (the "candidate") enters main only if main has
room for it or its estimated frequency is strictly higher than that of main's victim (the oldest
object of probation, or of protected when probation is empty); otherwise the candidate itself is
evicted. Ties keep the incumbent, as in Caffeine.

Mapping the contest onto `evict()`, which must return exactly one tracked victim per call (the
index calls it before inserting the newcomer, until the newcomer fits):

1. While the window holds at least its share, its oldest object is the candidate: the newcomer
   (at least one byte, or no room would be needed) is about to enter the window, so a full window
   is about to overflow, which is when Caffeine holds the contest. If main has room, the candidate
   moves to probation and the loop goes on (no bytes were freed). Otherwise the contest decides:
   the loser is the victim returned; a winning candidate moves to probation.
2. Once the window is below its share, the bytes still needed come from main's victim directly
   (Caffeine does the same when it runs out of window candidates). Only when main is empty does
   the window give up its oldest object.

The newcomer itself enters the window after the evictions and meets the contest when it reaches
the window's old end, at a later miss: the same lag Caffeine has between a write and its
maintenance run. A winning candidate larger than main's victim can leave main above its share;
the window is then correspondingly smaller, the total is still bounded by the index, and later
contests bring main back.

The window stays at 1%: Caffeine's hill climbing that resizes it adaptively is not implemented,
and there is no doorkeeper (Caffeine has none either). The sketch is sized by object count, never
by bytes (libCacheSim sizes it in bytes and its counters overflow on large caches): it starts
small and doubles as the number of tracked objects grows, keeping every estimate (see
`FrequencySketch.ensure_capacity`).
"""

import zlib
from collections import OrderedDict

from core.cache.eviction import EvictionPolicy, register_eviction_policy

WINDOW_SHARE = 0.01
PROTECTED_SHARE_OF_MAIN = 0.80
SKETCH_DEPTH = 4
MAX_COUNT = 15
"""Counters saturate at 15, i.e. 4 bits, as in TinyLFU and Caffeine."""
SAMPLES_PER_COUNTER = 10
"""Aging: all counters are halved after 10 * width increments (Caffeine: 10 * maximum size)."""
INITIAL_SKETCH_WIDTH = 64
_HALVE = bytes(count >> 1 for count in range(256))
# Odd multiplier of Fibonacci hashing (Knuth); it derives the second hash of double hashing.
_GOLDEN_64 = 0x9E3779B97F4A7C15
_MASK_64 = (1 << 64) - 1


def key_hash(key: str) -> int:
    """The sketch's two hashes of `key`, packed: CRC-32 in the low 32 bits, the step above.

    CRC-32 because Python's `hash(str)` is salted per process (PYTHONHASHSEED), which would make
    the sketch's collisions, and so the cache's decisions, differ from run to run. The step (odd,
    so the rows' indexes differ at every width) is derived once here rather than per increment.
    """
    low = zlib.crc32(key.encode())
    step = (((low * _GOLDEN_64) & _MASK_64) >> 32) | 1
    return low | (step << 32)


class FrequencySketch:
    """Count-min sketch (Cormode & Muthukrishnan) with 4-bit counters and periodic halving.

    `SKETCH_DEPTH` rows of `width` counters; row i counts a key at index `(h1 + i * h2) % width`
    (Kirsch-Mitzenmacher double hashing, h1 and h2 from `key_hash`); the estimate is the smallest
    of the key's counters.
    After `SAMPLES_PER_COUNTER * width` increments every counter is halved, TinyLFU's "reset",
    so that the estimate follows recent popularity.
    """

    __slots__ = ("_increments", "_mask", "_rows", "_sample_size")

    def __init__(self, width: int = INITIAL_SKETCH_WIDTH) -> None:
        if width < 1 or width & (width - 1):
            raise ValueError(f"sketch width must be a power of two, not {width}")
        self._rows = [bytearray(width) for _ in range(SKETCH_DEPTH)]
        self._mask = width - 1
        self._sample_size = SAMPLES_PER_COUNTER * width
        self._increments = 0

    @property
    def width(self) -> int:
        return self._mask + 1

    def increment(self, hashed: int) -> None:
        mask = self._mask
        # Low bits: the first hash (masking drops the step above it); high bits: the step.
        step = hashed >> 32
        index = hashed
        for row in self._rows:
            slot = index & mask
            if row[slot] < MAX_COUNT:
                row[slot] += 1
            index += step
        self._increments += 1
        if self._increments >= self._sample_size:
            self._rows = [row.translate(_HALVE) for row in self._rows]
            self._increments //= 2

    def estimate(self, hashed: int) -> int:
        mask = self._mask
        step = hashed >> 32
        index = hashed
        smallest = MAX_COUNT
        for row in self._rows:
            count = row[index & mask]
            if count < smallest:
                smallest = count
            index += step
        return smallest

    def ensure_capacity(self, objects: int) -> None:
        """Grow to at least `objects` counters per row, keeping every key's estimate.

        Doubling the width adds one bit to each index, so a key's counter moves either to the
        same slot or to the slot one old width further; copying each row into both halves leaves
        every counter a key maps to, and so every estimate, unchanged.
        """
        while self._mask + 1 < objects:
            self._rows = [row + row for row in self._rows]
            self._mask = (self._mask << 1) | 1
            self._sample_size *= 2


class WTinyLFUPolicy(EvictionPolicy):
    __slots__ = (
        "_hashes",
        "_main_bytes",
        "_main_capacity",
        "_probation",
        "_protected",
        "_protected_bytes",
        "_protected_capacity",
        "_sketch",
        "_window",
        "_window_bytes",
        "_window_capacity",
    )
    name = "wtinylfu"

    def __init__(self, capacity_bytes: int) -> None:
        self._window_capacity = int(capacity_bytes * WINDOW_SHARE)
        self._main_capacity = capacity_bytes - self._window_capacity
        self._protected_capacity = int(self._main_capacity * PROTECTED_SHARE_OF_MAIN)
        # Segments map key -> size, least recently used first.
        self._window: OrderedDict[str, int] = OrderedDict()
        self._probation: OrderedDict[str, int] = OrderedDict()
        self._protected: OrderedDict[str, int] = OrderedDict()
        self._window_bytes = 0
        self._main_bytes = 0
        self._protected_bytes = 0
        # The hash of every tracked key, so a hit or a contest does not hash again.
        self._hashes: dict[str, int] = {}
        self._sketch = FrequencySketch()

    def on_insert(self, key: str, size: int, now: float) -> None:
        hashed = key_hash(key)
        self._hashes[key] = hashed
        self._sketch.increment(hashed)
        self._sketch.ensure_capacity(len(self._hashes))
        self._window[key] = size
        self._window_bytes += size

    def on_hit(self, key: str, now: float) -> None:
        self._sketch.increment(self._hashes[key])
        if key in self._window:
            self._window.move_to_end(key)
        elif key in self._protected:
            self._protected.move_to_end(key)
        else:
            self._promote(key)

    def on_remove(self, key: str) -> None:
        size = self._window.pop(key, None)
        if size is None:
            self._drop_from_main(key)
        else:
            self._window_bytes -= size
            del self._hashes[key]

    def evict(self, now: float) -> str:
        window = self._window
        while self._window_bytes >= self._window_capacity and window:
            candidate, size = window.popitem(last=False)
            self._window_bytes -= size
            if self._main_bytes + size <= self._main_capacity:
                self._probation[candidate] = size
                self._main_bytes += size
                continue
            victim = self._main_victim()
            # No victim: main is empty yet has no room, the candidate alone exceeds its share.
            if victim is None or not self._admits(candidate, victim):
                del self._hashes[candidate]
                return candidate
            self._probation[candidate] = size
            self._main_bytes += size
            self._drop_from_main(victim)
            return victim
        victim = self._main_victim()
        if victim is None:
            victim, size = window.popitem(last=False)
            self._window_bytes -= size
            del self._hashes[victim]
            return victim
        self._drop_from_main(victim)
        return victim

    def __len__(self) -> int:
        return len(self._hashes)

    def _admits(self, candidate: str, victim: str) -> bool:
        estimate = self._sketch.estimate
        return estimate(self._hashes[candidate]) > estimate(self._hashes[victim])

    def _main_victim(self) -> str | None:
        """The oldest object of probation, else of protected; None when main is empty."""
        if self._probation:
            return next(iter(self._probation))
        if self._protected:
            return next(iter(self._protected))
        return None

    def _drop_from_main(self, key: str) -> None:
        del self._hashes[key]
        size = self._probation.pop(key, None)
        if size is None:
            size = self._protected.pop(key)
            self._protected_bytes -= size
        self._main_bytes -= size

    def _promote(self, key: str) -> None:
        """Move a hit object from probation to protected, demoting protected's overflow."""
        size = self._probation.pop(key)
        self._protected[key] = size
        self._protected_bytes += size
        while self._protected_bytes > self._protected_capacity:
            demoted, demoted_size = self._protected.popitem(last=False)
            self._protected_bytes -= demoted_size
            self._probation[demoted] = demoted_size


register_eviction_policy(WTinyLFUPolicy.name, WTinyLFUPolicy)
