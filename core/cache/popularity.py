"""Exponentially decayed request rates per key: how hot each video (or path) is right now.

Each key keeps a decayed request count and the time it was last updated, and is decayed lazily,
only when it is touched: a hit at `now` sets

    count = count * 2 ** (-(now - last) / half_life) + 1

so the count is the sum over past requests of 2 ** (-age / half_life), exactly what decaying
every key eagerly at every tick would give, at O(1) per request. Times `ln 2 / half_life` it is
a rate in requests per second: the weights of a steady stream of r requests per second sum to
about `r * half_life / ln 2`, so its rate converges to r (just after a hit it reads up to
`ln 2 / (2 * half_life)` above r, the share of that newest, undecayed hit). When the requests
stop, the rate halves every `half_life` seconds.

Memory is bounded twice: at most `max_keys` keys (the least recently updated one is dropped
first), and a key idle for `max_idle` seconds is forgotten, so the tracked keys are the ones
requested recently. Reads (`rate`, `rates`, `quantile_rate`, `hottest`) never change anything;
writes (`hit`, `raise_to`) drop the forgotten keys, amortised O(1) since each key is dropped once.

Time comes in as `now` and is expected not to decrease; a `now` earlier than the latest one a
write has seen is taken as that latest one (no time passed), so a clock step backwards can
neither inflate a rate nor reorder the keys.
"""

import heapq
import math
from collections import OrderedDict
from collections.abc import Iterator
from operator import itemgetter

_LN2 = math.log(2.0)


class DecayedRates:
    """Exponentially decayed request rates (requests/s) per string key."""

    __slots__ = (
        "_entries",
        "_half_life",
        "_latest_now",
        "_max_idle",
        "_max_keys",
        "_rate_per_count",
    )

    def __init__(self, *, half_life: float, max_keys: int, max_idle: float = math.inf) -> None:
        if not half_life > 0:
            raise ValueError(f"half_life must be positive, not {half_life}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        if not max_idle > 0:
            raise ValueError(f"max_idle must be positive, not {max_idle}")
        self._half_life = half_life
        self._max_keys = max_keys
        self._max_idle = max_idle
        self._rate_per_count = _LN2 / half_life
        # key -> (decayed count at the last update, time of the last update), least recently
        # updated first: the front is what `max_keys` and `max_idle` drop.
        self._entries: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._latest_now = -math.inf

    def __len__(self) -> int:
        """Keys held in memory, including idle ones the next write will forget."""
        return len(self._entries)

    def hit(self, key: str, now: float) -> None:
        """Count one request for `key` at `now`."""
        self._store(key, self._count(key, now) + 1.0, now)

    def raise_to(self, key: str, rate: float, now: float) -> None:
        """Make `key`'s rate at least `rate` (a head start, e.g. for a video known to trend)."""
        self._store(key, max(self._count(key, now), rate / self._rate_per_count), now)

    def rate(self, key: str, now: float) -> float:
        """`key`'s decayed request rate at `now` in requests/s; 0 for a forgotten key."""
        return self._count(key, now) * self._rate_per_count

    def rates(self, now: float) -> Iterator[tuple[str, float]]:
        """Every tracked (not forgotten) key with its rate at `now`, in no useful order. O(n)."""
        now = max(now, self._latest_now)
        forgotten_before = now - self._max_idle
        half_life, rate_per_count = self._half_life, self._rate_per_count
        # Walks the plain dict beneath the OrderedDict: no order is needed here, and OrderedDict's
        # own iterators look every key up again while following their linked list, many times
        # slower (cache misses) on a large, much reordered dict.
        for key, (count, last) in dict.items(self._entries):
            if last > forgotten_before:
                yield key, count * math.exp2((last - now) / half_life) * rate_per_count

    def quantile_rate(self, fraction: float, now: float) -> float:
        """The rate a key needs at `now` to be among the hottest `fraction` of tracked keys.

        That is the rate of the k-th hottest key, k = round(fraction * tracked) but at least 1,
        so keys whose rate is at least the result make up about `fraction` of the tracked ones
        (more only on ties). 0.0 when nothing is tracked. O(n log k): for tuning and periodic
        recomputation, not for every request.
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], not {fraction}")
        live_rates = [rate for _, rate in self.rates(now)]
        if not live_rates:
            return 0.0
        k = max(1, round(fraction * len(live_rates)))
        return heapq.nlargest(k, live_rates)[-1]

    def hottest(self, n: int, now: float) -> list[tuple[str, float]]:
        """The `n` hottest tracked keys with their rates at `now`, hottest first.

        O(tracked * log n), for reports and metrics.
        """
        return heapq.nlargest(n, self.rates(now), key=itemgetter(1))

    def _count(self, key: str, now: float) -> float:
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        count, last = entry
        idle = max(now, self._latest_now) - last
        if idle >= self._max_idle:
            return 0.0
        return count * math.exp2(-idle / self._half_life)

    def _store(self, key: str, count: float, now: float) -> None:
        # `count` was computed by `_count` at this same `now`, so the clamp agrees with it.
        now = self._latest_now = max(now, self._latest_now)
        entries = self._entries
        entries[key] = (count, now)
        entries.move_to_end(key)
        while len(entries) > self._max_keys:
            entries.popitem(last=False)
        # The front is the least recently updated key: once it is recent enough, all are.
        max_idle = self._max_idle
        while now - next(iter(entries.values()))[1] >= max_idle:
            entries.popitem(last=False)
