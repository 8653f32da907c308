"""Eviction policies: one small shape for every policy, chosen by name (libCacheSim style).

A policy only orders keys; it never holds bytes. The `CacheIndex` owns capacity accounting and
calls the policy: `on_insert` for a new object, `on_hit` on every hit, `on_remove` when an object
leaves for another reason (purge, expiry, replacement), and `evict` when it needs room. `evict`
picks the victim, forgets it and returns its key.

Each policy module registers itself at import; `create_eviction_policy("s3fifo", ...)` builds one.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable

from core.registry import Registry


class EvictionPolicy(ABC):
    """Orders the objects of one byte-bounded cache for eviction."""

    __slots__ = ()
    name: str

    @abstractmethod
    def on_insert(self, key: str, size: int, now: float) -> None:
        """`key` (not currently tracked) was stored with `size` bytes."""

    @abstractmethod
    def on_hit(self, key: str, now: float) -> None:
        """`key` (tracked) was requested and found."""

    @abstractmethod
    def on_remove(self, key: str) -> None:
        """`key` (tracked) left the cache for a reason other than eviction."""

    @abstractmethod
    def evict(self, now: float) -> str:
        """Choose a victim among the tracked keys, stop tracking it and return it.

        Only called while at least one key is tracked.
        """

    @abstractmethod
    def __len__(self) -> int:
        """How many keys are tracked."""


EvictionFactory = Callable[[int], EvictionPolicy]
"""Builds a policy for a cache of the given capacity in bytes."""


def create_eviction_policy(name: str, *, capacity_bytes: int) -> EvictionPolicy:
    """The policy registered as `name`; ValueError naming the known ones otherwise."""
    return _registry.get(name)(capacity_bytes)


def _load_builtin_policies() -> None:
    # Imported lazily: each module registers itself, and importing them here at module level
    # would be circular (they import EvictionPolicy from this module).
    from core.cache.eviction import gdsf, lru, s3fifo, sieve, wtinylfu  # noqa: F401


_registry = Registry[EvictionFactory]("eviction policy", _load_builtin_policies)
register_eviction_policy = _registry.register
eviction_policy_names = _registry.names
