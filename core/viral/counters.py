"""Exponentially decayed counters, and their hot-key splitting.

Why decay rather than fixed windows: a decayed counter is one float and one timestamp per key,
updated in O(1) and read at any instant without bucket rotation, so a detector can hold
millions of videos and answer "how fast now?" the moment an event arrives. With mean lifetime
`tau` (half-life `tau * ln 2`), a steady stream of `rate` events/s holds about `rate * tau`.

Hot-key splitting (`ShardedCounter`): one viral video can draw a large share of all events, and
a single counter key is then a hot spot wherever counters live in a shared store (one Redis
key, one partition, one lock). Past `split_rate` events/s a key's increments are spread over
`shards` sub-counters picked by a caller-given spread key (the viewer), so each shard takes
about 1/shards of the load; every read merges the shards (the sum of decayed counters with the
same lifetime is the decayed counter of the sum, so merging loses nothing). A key that cools
down keeps its shards until they decay to nothing; reads stay exact throughout.
"""

import math
import zlib
from dataclasses import dataclass, field


@dataclass
class DecayedCounter:
    """A count whose every unit decays as exp(-age / tau)."""

    tau: float
    value: float = 0.0
    at: float = 0.0

    def read(self, now: float) -> float:
        """The decayed count at `now` (a `now` before the last update reads as that update)."""
        return self.value * math.exp(-max(0.0, now - self.at) / self.tau)

    def add(self, amount: float, now: float) -> None:
        self.value = self.read(now) + amount
        self.at = max(self.at, now)


@dataclass
class ShardedCounter:
    """A decayed counter that splits into `shards` sub-counters while it is hot."""

    tau: float
    split_rate: float
    shards: int
    _parts: list[DecayedCounter] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._parts = [DecayedCounter(self.tau)]

    @property
    def split(self) -> bool:
        return len(self._parts) > 1

    def add(self, amount: float, now: float, spread_key: str) -> None:
        if not self.split and self.shards > 1 and self.rate(now) > self.split_rate:
            self._parts.extend(DecayedCounter(self.tau) for _ in range(self.shards - 1))
        # crc32, not hash(): the shard a viewer's increments go to must not change per process.
        part = self._parts[zlib.crc32(spread_key.encode()) % len(self._parts)]
        part.add(amount, now)

    def read(self, now: float) -> float:
        """The merged count over every shard."""
        return sum(part.read(now) for part in self._parts)

    def rate(self, now: float) -> float:
        """Events/s the counter holds, as a steady stream would."""
        return self.read(now) / self.tau


__all__ = ["DecayedCounter", "ShardedCounter"]
