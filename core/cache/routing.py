"""Which upstream a cache node asks for a key: its parents in rendezvous-hash order, then the
origin, leaving out parents that failed recently (passive health) until they recover.

Rendezvous (highest-random-weight) hashing: each parent scores each key with a stable hash, and
the parents are tried from the highest score down. Every node with the same parent list computes
the same order for a key, so edges concentrate a key on one regional node (one shield fetch per
key, not one per edge), and removing a parent moves only the keys that parent had first.

    score(parent, key) = the 64-bit big-endian integer of BLAKE2b-64(parent + NUL + key), UTF-8

(ties, which need a 64-bit collision, go to the smaller name; parent names cannot contain NUL,
so the input splits unambiguously.) Python's `hash()` is salted per process and would give every
node its own order.

Passive health, per parent:

- `report_failure` (a refused connection, a timeout, a 502/503/504, a failed probe) takes a
  healthy parent out of rotation for `backoff_initial` seconds. A failure reported after that
  back-off ran out (a failed probe, or a request let through) doubles it, up to `backoff_max`.
  Failures reported before it ran out change nothing: they are requests that were already in
  flight when the parent went down, and must not push its recovery further away.
- When the back-off runs out, the parent is due for a probe: `probes_due` hands it to the shell,
  which sends a health request and reports the result (`report_success` / `report_failure`).
  While that probe is outstanding the parent stays out of rotation. If no result comes within
  `probe_interval`, the parent is eligible again and due for another probe, so a shell that does
  not probe (or loses a result) still gets its parents back, half-open, after the back-off.
- `report_success` (a probe, or any answer from the parent) makes it healthy at once.

`candidates(key, now)` lists the eligible parents in rendezvous order. When no parent is eligible
(all in back-off or being probed), it lists all of them in rendezvous order instead, as a last
resort before the origin: the point of a shield tier is to protect the origin, and "every parent
down" is more often this node's own trouble (or a blip) than a regional outage. The cost, when the
parents really are down, is one failed attempt each per request, so the shell should use a short
connect timeout for parents. The origin, if configured, always comes last; it has no health
state (reports about it are ignored): there is nothing behind it to fall back to.

Timers follow the aioquic pattern: `next_deadline()` says when the shell should next call
`probes_due(now)`; nothing here reads a clock.
"""

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


def rendezvous_score(node: str, key: str) -> int:
    """The rendezvous weight of `node` for `key` (see the module docstring)."""
    data = node.encode("utf-8", "surrogatepass") + b"\x00" + key.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def rendezvous_order(key: str, nodes: Sequence[str]) -> list[str]:
    """`nodes` from the highest rendezvous score for `key` to the lowest."""
    return sorted(nodes, key=lambda node: (-rendezvous_score(node, key), node))


class ParentState(enum.Enum):
    HEALTHY = "healthy"
    """In rotation."""
    BACKOFF = "backoff"
    """Failed; out of rotation until its back-off runs out."""
    PROBE_DUE = "probe_due"
    """Back-off over and no probe outstanding: `probes_due` returns it; eligible (half-open)."""
    PROBING = "probing"
    """A probe is outstanding: out of rotation until its result (or `probe_interval`)."""


@dataclass(frozen=True)
class ParentStats:
    """One parent's health, for metrics and logs."""

    parent: str
    state: ParentState
    consecutive_failures: int
    """Failures reported since the last success (stragglers included)."""
    backoff: float
    """The current back-off in seconds; 0 when healthy."""
    retry_at: float | None
    """When the current back-off runs out; None when healthy."""
    since: float | None
    """When the parent last went down or came back; None if it never changed."""


@dataclass(slots=True)
class _Health:
    consecutive_failures: int = 0
    backoff: float = 0.0
    retry_at: float | None = None
    """None: healthy."""
    probe_sent_at: float | None = None
    since: float | None = None


class ParentRouter:
    """Parent selection with passive health for one cache node; see the module docstring."""

    def __init__(
        self,
        parents: Sequence[str],
        origin: str | None,
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        probe_interval: float = 5.0,
    ) -> None:
        """`parents`: the next tier's base URLs (may be empty); `origin`: tried after them, or
        None. An origin that is also listed as a parent is just a parent (it is not listed twice).
        ValueError for an empty or duplicated parent name, a name containing NUL, or
        non-positive times (`backoff_max` below `backoff_initial` included)."""
        if len(set(parents)) != len(parents):
            raise ValueError(f"duplicate parents in {list(parents)}")
        if any(not parent or "\x00" in parent for parent in parents):
            raise ValueError("parent names must be non-empty and contain no NUL")
        if not (0 < backoff_initial <= backoff_max) or not probe_interval > 0:
            raise ValueError(
                "need 0 < backoff_initial <= backoff_max and probe_interval > 0, got "
                f"{backoff_initial}, {backoff_max}, {probe_interval}"
            )
        self._parents = tuple(parents)
        self._origin = None if origin in self._parents else origin
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._probe_interval = probe_interval
        self._health = {parent: _Health() for parent in self._parents}

    @property
    def parents(self) -> tuple[str, ...]:
        return self._parents

    @property
    def origin(self) -> str | None:
        return self._origin

    def candidates(self, key: str, now: float) -> list[str]:
        """The upstreams to try for `key` at `now`, in order (see the module docstring)."""
        ordered = rendezvous_order(key, self._parents)
        eligible = [parent for parent in ordered if self._eligible(self._health[parent], now)]
        chosen = eligible or ordered
        return chosen if self._origin is None else [*chosen, self._origin]

    def is_usable(self, now: float) -> bool:
        """Whether some upstream is in rotation: an eligible parent, or an origin (readiness).

        `candidates` is not the test: it falls back to parents in back-off rather than return
        nothing."""
        return self._origin is not None or any(
            self._eligible(health, now) for health in self._health.values()
        )

    def report_failure(self, parent: str, now: float) -> None:
        """`parent` failed at `now` (a request or a probe); see the module docstring."""
        health = self._health_of(parent)
        if health is None:
            return
        health.consecutive_failures += 1
        if health.retry_at is None:
            health.backoff = self._backoff_initial
            health.since = now
        elif now >= health.retry_at:
            health.backoff = min(health.backoff * 2, self._backoff_max)
        else:
            return  # sent before the parent was taken out: already accounted for
        health.retry_at = now + health.backoff
        health.probe_sent_at = None

    def report_success(self, parent: str, now: float) -> None:
        """`parent` answered at `now` (a request or a probe): healthy again, back-off reset."""
        health = self._health_of(parent)
        if health is None:
            return
        was_down = health.retry_at is not None
        self._health[parent] = _Health(since=now if was_down else health.since)

    def probes_due(self, now: float) -> list[str]:
        """The parents to probe now, in configuration order; each is marked as being probed."""
        due: list[str] = []
        for parent in self._parents:
            health = self._health[parent]
            if self._state(health, now) is ParentState.PROBE_DUE:
                health.probe_sent_at = now
                due.append(parent)
        return due

    def next_deadline(self) -> float | None:
        """When `probes_due` next has something to return (possibly already past); None while
        every parent is healthy."""
        deadlines = [
            health.retry_at
            if health.probe_sent_at is None
            else health.probe_sent_at + self._probe_interval
            for health in self._health.values()
            if health.retry_at is not None
        ]
        return min(deadlines, default=None)

    def stats(self, now: float) -> list[ParentStats]:
        """Every parent's health at `now`, in configuration order."""
        return [
            ParentStats(
                parent=parent,
                state=self._state(health, now),
                consecutive_failures=health.consecutive_failures,
                backoff=health.backoff,
                retry_at=health.retry_at,
                since=health.since,
            )
            for parent, health in self._health.items()
        ]

    def _health_of(self, name: str) -> _Health | None:
        """The health record of a parent; None for the origin. ValueError for anything else."""
        health = self._health.get(name)
        if health is None and name != self._origin:
            raise ValueError(f"{name!r} is neither a parent nor the origin")
        return health

    def _state(self, health: _Health, now: float) -> ParentState:
        if health.retry_at is None:
            return ParentState.HEALTHY
        if now < health.retry_at:
            return ParentState.BACKOFF
        if health.probe_sent_at is not None and now < health.probe_sent_at + self._probe_interval:
            return ParentState.PROBING
        return ParentState.PROBE_DUE

    def _eligible(self, health: _Health, now: float) -> bool:
        return self._state(health, now) in (ParentState.HEALTHY, ParentState.PROBE_DUE)


__all__ = [
    "ParentRouter",
    "ParentState",
    "ParentStats",
    "rendezvous_order",
    "rendezvous_score",
]
