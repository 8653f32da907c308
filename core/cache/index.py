"""The byte-bounded index of one cache: which keys are stored, how big they are, what to evict.

The index owns the capacity accounting and the eviction policy only orders keys (see
`core.cache.eviction`). Invariant: `used_bytes <= capacity_bytes` after every call.

Semantics follow libCacheSim, so results compare request by request: the capacity is strict on
bytes, room is made *before* the newcomer is inserted (so a policy never evicts the object being
stored), and an object larger than the whole cache is refused without evicting anything.
"""

from collections.abc import Iterator

from core.cache.eviction import EvictionPolicy


class ObjectTooLarge(ValueError):
    """An object bigger than the whole cache was offered; the index was left unchanged."""

    def __init__(self, key: str, size: int, capacity_bytes: int) -> None:
        super().__init__(f"{key!r} has {size} bytes, more than the cache's {capacity_bytes}")
        self.key = key
        self.size = size
        self.capacity_bytes = capacity_bytes


class CacheIndex:
    """Key -> size for the objects of one cache, evicting through `policy` to stay in capacity.

    `policy` must be new (tracking nothing) and is best built for the same capacity, from which
    policies such as S3-FIFO and W-TinyLFU size their queues.
    """

    __slots__ = ("_capacity_bytes", "_policy", "_sizes", "_used_bytes")

    def __init__(self, capacity_bytes: int, policy: EvictionPolicy) -> None:
        if capacity_bytes < 1:
            raise ValueError(f"capacity_bytes must be positive, not {capacity_bytes}")
        if len(policy):
            raise ValueError("the eviction policy must start empty")
        self._capacity_bytes = capacity_bytes
        self._policy = policy
        self._sizes: dict[str, int] = {}
        self._used_bytes = 0

    @property
    def capacity_bytes(self) -> int:
        return self._capacity_bytes

    @property
    def used_bytes(self) -> int:
        return self._used_bytes

    def __len__(self) -> int:
        return len(self._sizes)

    def __contains__(self, key: object) -> bool:
        return key in self._sizes

    def __iter__(self) -> Iterator[str]:
        return iter(self._sizes)

    def size_of(self, key: str) -> int | None:
        """The stored size of `key`, or None when it is not cached."""
        return self._sizes.get(key)

    def lookup(self, key: str, now: float) -> bool:
        """A request for `key`: True on a hit (the policy is told), False on a miss."""
        if key in self._sizes:
            self._policy.on_hit(key, now)
            return True
        return False

    def insert(self, key: str, size: int, now: float) -> list[str]:
        """Store `key` with `size` bytes and return the keys evicted for it, in eviction order.

        A `key` already present is replaced: its old copy is removed first (not counted as an
        eviction) and the new one enters the policy as a new object. Raises `ObjectTooLarge`,
        before changing anything, when `size` exceeds the capacity: even the old copy of a
        replaced key stays, so the caller decides whether to `remove` it.
        """
        if size < 0:
            raise ValueError(f"{key!r}: size must not be negative, not {size}")
        if size > self._capacity_bytes:
            raise ObjectTooLarge(key, size, self._capacity_bytes)
        sizes = self._sizes
        policy = self._policy
        old_size = sizes.pop(key, None)
        if old_size is not None:
            self._used_bytes -= old_size
            policy.on_remove(key)
        evicted: list[str] = []
        room = self._capacity_bytes - size
        while self._used_bytes > room:
            victim = policy.evict(now)
            self._used_bytes -= sizes.pop(victim)
            evicted.append(victim)
        sizes[key] = size
        self._used_bytes += size
        policy.on_insert(key, size, now)
        return evicted

    def remove(self, key: str) -> bool:
        """Drop `key` (purge, expiry); False when it was not cached."""
        size = self._sizes.pop(key, None)
        if size is None:
            return False
        self._used_bytes -= size
        self._policy.on_remove(key)
        return True
