"""A seeded synthetic CDN workload and a cache simulator, shared by the golden tests and
`bench/policies.py`.

Independent-reference model: each request picks an object by Zipf popularity; object sizes are
lognormal (heavy-tailed, as segment sizes across bitrates and durations are), fixed per object.
"""

import bisect
import math
import random
from dataclasses import dataclass
from itertools import accumulate

from core.cache.eviction import create_eviction_policy
from core.cache.index import CacheIndex

GOLDEN_SEED = 20240607
GOLDEN_OBJECTS = 5_000
GOLDEN_REQUESTS = 50_000
GOLDEN_ZIPF_ALPHA = 0.9
MEDIAN_OBJECT_BYTES = 100_000
SIZE_SIGMA = 1.0
"""Lognormal shape: about 5% of objects are over 5x the median."""


@dataclass(frozen=True, slots=True)
class Workload:
    keys: list[str]
    """The requested key, one per request."""
    sizes: dict[str, int]
    """Each object's size in bytes."""

    @property
    def working_set_bytes(self) -> int:
        return sum(self.sizes.values())


def zipf_workload(
    seed: int = GOLDEN_SEED,
    objects: int = GOLDEN_OBJECTS,
    requests: int = GOLDEN_REQUESTS,
    alpha: float = GOLDEN_ZIPF_ALPHA,
) -> Workload:
    """`requests` draws over `objects` keys, rank r requested with probability ~ 1 / r**alpha.

    Built from `random.Random(seed).random()` and `lognormvariate` only, whose algorithms are
    fixed across Python versions, so the golden numbers stay put.
    """
    rng = random.Random(seed)
    names = [f"obj{rank:05d}" for rank in range(objects)]
    sizes = {
        name: max(1, round(rng.lognormvariate(math.log(MEDIAN_OBJECT_BYTES), SIZE_SIGMA)))
        for name in names
    }
    cumulative = list(accumulate(1.0 / (rank + 1) ** alpha for rank in range(objects)))
    total = cumulative[-1]
    # bisect_left: a draw that rounds up to `total` still lands on the last rank.
    keys = [names[bisect.bisect_left(cumulative, rng.random() * total)] for _ in range(requests)]
    return Workload(keys, sizes)


@dataclass(frozen=True, slots=True)
class Outcome:
    hits: int
    missed_bytes: int
    hit_flags: bytearray
    """1 for each request that hit, 0 for each miss, in request order."""


def simulate(workload: Workload, policy_name: str, capacity_bytes: int) -> Outcome:
    """Replay: a hit is a lookup that finds the key; a miss stores the object if it fits."""
    index = CacheIndex(
        capacity_bytes, create_eviction_policy(policy_name, capacity_bytes=capacity_bytes)
    )
    sizes = workload.sizes
    lookup = index.lookup
    insert = index.insert
    hit_flags = bytearray(len(workload.keys))
    missed_bytes = 0
    for now, key in enumerate(workload.keys):
        if lookup(key, now):
            hit_flags[now] = 1
            continue
        size = sizes[key]
        missed_bytes += size
        if size <= capacity_bytes:
            insert(key, size, now)
    return Outcome(hit_flags.count(1), missed_bytes, hit_flags)
