"""Admission policies: whether an object fetched on a miss is worth storing, chosen by name.

Every request is shown to the policy (`observe`), hits and misses alike, so popularity can be
learned; `admit` is asked once per fetched, storable object. A policy that says no makes the
object stream through to the client uncached.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from core.cache.objects import ObjectRef
from core.registry import Registry


@dataclass(frozen=True)
class AdmissionSettings:
    """Settings every admission policy is built from; each uses what it needs."""

    tier: str = "edge"
    """"edge" or "regional": the viral policy keeps a smaller hot set at the edge."""
    hot_rate: float | None = None
    """Viral: the decayed request rate (requests/s) above which a video counts as hot. None means
    the tier's default."""
    half_life: float = 60.0
    """Viral: seconds for a video's request rate to halve when it stops being requested."""
    tracked_keys: int = 100_000
    """Popularity counters kept at most (least recently seen dropped first)."""
    doorkeeper_bits: int = 1 << 20
    """Second-hit: bits of the Bloom filter that remembers first requests."""
    doorkeeper_reset: float = 600.0
    """Second-hit: seconds after which the filter forgets (so it never fills up)."""


class AdmissionPolicy(ABC):
    name: str

    @abstractmethod
    def observe(self, ref: ObjectRef, now: float) -> None:
        """A request for `ref` arrived (hit or miss)."""

    @abstractmethod
    def admit(self, ref: ObjectRef, size: int, now: float) -> bool:
        """Should `ref`, just fetched with `size` bytes, be stored?"""

    def hint_trending(self, video_ids: Iterable[str], now: float) -> None:  # noqa: B027
        """The origin says these videos are trending; policies that track popularity use it."""

    def gauges(self, now: float) -> Mapping[str, float]:
        """Named figures about the policy's state, exported as metrics; none by default."""
        return {}


AdmissionFactory = Callable[[AdmissionSettings], AdmissionPolicy]


def create_admission_policy(name: str, settings: AdmissionSettings) -> AdmissionPolicy:
    """The policy registered as `name`; ValueError naming the known ones otherwise."""
    return _registry.get(name)(settings)


def _load_builtin_policies() -> None:
    # Lazy for the same reason as the eviction registry: the modules import this one.
    from core.cache.admission import always, second_hit, viral  # noqa: F401


_registry = Registry[AdmissionFactory]("admission policy", _load_builtin_policies)
register_admission_policy = _registry.register
admission_policy_names = _registry.names
