"""The "second-hit" policy: store an object only from its second request on ("cache on second hit").

Maggs & Sitaraman ("Algorithmic Nuggets in Content Delivery", SIGCOMM CCR 2015) report that
about three quarters of the objects an Akamai server sees are requested only once; storing them
just evicts something useful. nginx's `proxy_cache_min_uses 2` is the same rule. The first
request for a path streams through uncached; any later one is stored.

A doorkeeper remembers which paths were requested, in two Bloom filters: `once` holds every path
requested since the last reset, `again` every path requested at least twice. `observe` adds the
path to `once`, and to `again` if `once` already had it; `admit` asks `again`. Two filters are
needed because `admit` comes after `observe` for the same request (and, with slow origins, after
`observe` for other requests too): one filter would already hold the path when its first `admit`
asks. A Bloom filter never forgets a path it was given, so a path requested twice since the last
reset is always admitted; it may wrongly claim a path it never saw, so a first request is
sometimes admitted.

Both filters are cleared every `doorkeeper_reset` seconds of `now`, so they never fill up; a path
whose two requests straddle a reset needs a third.

False positives, with `HASH_COUNT` = 4 hashes and the default 2**20 bits (128 KiB) per filter,
for n distinct paths between resets, (1 - e**(-4n / 2**20))**4:

    n = 25,000: 0.007%    n = 50,000: 0.09%    n = 100,000: 1.0%    n = 200,000: 8.1%

A first request is wrongly admitted when `once` or `again` claims it, about the sum of the
rates for the two populations. Raise `doorkeeper_bits` (or shorten `doorkeeper_reset`) for nodes
seeing more than about 100,000 distinct paths per period.
"""

import hashlib
import struct

from core.cache.admission import AdmissionPolicy, AdmissionSettings, register_admission_policy
from core.cache.objects import ObjectRef

HASH_COUNT = 4
_INDEX_BYTES = 4
_INDEXES = struct.Struct(f"<{HASH_COUNT}I")
"""One blake2b digest split into HASH_COUNT little-endian 32-bit indexes."""


class BloomFilter:
    """A set of strings over a bit array: never a false "absent", sometimes a false "present".

    The k bit positions of a key come from one blake2b digest split into k 32-bit words, reduced
    modulo the size. blake2b rather than `hash()`, which is salted per process: the same requests
    must give the same decisions in every run, or golden tests and simulations would differ.
    """

    __slots__ = ("_bits", "_size")

    def __init__(self, bits: int) -> None:
        if bits < 8:
            raise ValueError(f"a Bloom filter needs at least 8 bits, not {bits}")
        self._bits = bytearray((bits + 7) // 8)
        self._size = len(self._bits) * 8

    def add(self, key: str) -> bool:
        """Add `key`; whether it was (probably) present already."""
        bits = self._bits
        present = True
        for position in self._positions(key):
            byte, mask = position >> 3, 1 << (position & 7)
            if not bits[byte] & mask:
                present = False
                bits[byte] |= mask
        return present

    def __contains__(self, key: str) -> bool:
        bits = self._bits
        return all(bits[position >> 3] & (1 << (position & 7)) for position in self._positions(key))

    def clear(self) -> None:
        self._bits[:] = bytes(len(self._bits))

    def _positions(self, key: str) -> list[int]:
        # surrogatepass: any str is a key, even one holding lone surrogates.
        digest = hashlib.blake2b(
            key.encode("utf-8", "surrogatepass"), digest_size=HASH_COUNT * _INDEX_BYTES
        ).digest()
        size = self._size
        return [word % size for word in _INDEXES.unpack(digest)]


class SecondHitAdmission(AdmissionPolicy):
    name = "second-hit"

    def __init__(self, settings: AdmissionSettings) -> None:
        if not settings.doorkeeper_reset > 0:
            raise ValueError(f"doorkeeper_reset must be positive, not {settings.doorkeeper_reset}")
        self._requested_once = BloomFilter(settings.doorkeeper_bits)
        self._requested_again = BloomFilter(settings.doorkeeper_bits)
        self._reset_period = settings.doorkeeper_reset
        self._period_started: float | None = None

    def observe(self, ref: ObjectRef, now: float) -> None:
        self._reset_if_due(now)
        if self._requested_once.add(ref.path):
            self._requested_again.add(ref.path)

    def admit(self, ref: ObjectRef, size: int, now: float) -> bool:
        self._reset_if_due(now)
        return ref.path in self._requested_again

    def _reset_if_due(self, now: float) -> None:
        if self._period_started is None:
            self._period_started = now
        elif now - self._period_started >= self._reset_period:
            self._requested_once.clear()
            self._requested_again.clear()
            self._period_started = now


register_admission_policy(SecondHitAdmission.name, SecondHitAdmission)
