"""Per-client request rate limiting: one token bucket per client, in bounded memory.

Each client (a key such as its address) owns a bucket of at most `burst` tokens that refills
at `rate` tokens a second; a request takes one token or is refused. Over any window of length
t a client is therefore allowed at most `burst + rate * t` requests.

Memory is bounded twice over, and each request costs O(1) (amortised):

- a bucket that has refilled to `burst` is indistinguishable from a new one, so buckets idle
  for `burst / rate` seconds or more are forgotten (the least recently used end of the table
  is swept a little on every call);
- at most `max_clients` buckets are held: past that the least recently used is dropped even
  if it was not full. That client starts again with a full bucket, which is the price of the
  bound: a flood of more than `max_clients` distinct active addresses can earn one of them a
  fresh burst. Size `max_clients` above the number of clients active within `burst / rate`.

Pure: time is passed in as `now` (seconds, any monotonic origin), never read.
"""

from collections import OrderedDict
from collections.abc import Hashable

_SWEEP_PER_CALL = 2
"""Idle buckets examined (and forgotten if full) per call: amortised O(1) cleanup."""


class RateLimiter:
    """Token buckets per client; `allow` takes a token, `retry_after` says when one comes."""

    __slots__ = ("_buckets", "_full_after", "burst", "max_clients", "rate")

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        if max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, got {max_clients!r}")
        self.rate = float(rate)
        self.burst = burst
        self.max_clients = max_clients
        self._full_after = burst / self.rate
        """Seconds after which any bucket has refilled completely."""
        # client -> [tokens, time of the last update]; least recently used first.
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()

    def __len__(self) -> int:
        """Buckets held (clients seen recently that have not refilled)."""
        return len(self._buckets)

    def _tokens(self, client: Hashable, now: float) -> list[float] | None:
        bucket = self._buckets.get(client)
        if bucket is not None:
            tokens, last = bucket
            # A clock that steps back refills nothing (and takes nothing back).
            bucket[0] = min(float(self.burst), tokens + max(0.0, now - last) * self.rate)
            bucket[1] = max(last, now)
        return bucket

    def allow(self, client: Hashable, now: float) -> bool:
        """Take one token from `client`'s bucket; False (nothing taken) if it has none."""
        self._sweep(now)
        bucket = self._tokens(client, now)
        if bucket is None:
            bucket = [float(self.burst), now]
            self._buckets[client] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        return False

    def retry_after(self, client: Hashable, now: float) -> float:
        """Seconds until `client` may make its next request (0 if it may now)."""
        bucket = self._tokens(client, now)
        if bucket is None or bucket[0] >= 1.0:
            return 0.0
        return (1.0 - bucket[0]) / self.rate

    def _sweep(self, now: float) -> None:
        """Forget a few least recently used buckets that have refilled completely."""
        buckets = self._buckets
        for _ in range(_SWEEP_PER_CALL):
            if not buckets:
                return
            client = next(iter(buckets))
            # Buckets are in the order they were last touched: if the oldest has not been
            # idle long enough to be full, no other has.
            if now - buckets[client][1] < self._full_after:
                return
            del buckets[client]


__all__ = ["RateLimiter"]
