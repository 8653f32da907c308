"""What happens to a cache node: the events its shell (or the simulator) feeds to `CacheNode`.

Every event carries `now`, in POSIX seconds: HTTP age arithmetic compares it with Date headers,
so the live shell passes the wall clock and the simulator its simulated epoch.
Header fields are mappings with lowercase names, field lines combined with ", ".
"""

from collections.abc import Mapping
from dataclasses import dataclass

Fields = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A client request arrived."""

    request_id: int
    method: str
    target: str
    """The raw request target: path and query, exactly as received."""
    headers: Fields
    now: float


@dataclass(frozen=True, slots=True)
class UpstreamResponded:
    """The upstream of fetch `fetch_id` sent its status line and header fields."""

    fetch_id: int
    status: int
    headers: Fields
    now: float


@dataclass(frozen=True, slots=True)
class UpstreamFailed:
    """Fetch `fetch_id` failed: before its response started, or while its body was streaming."""

    fetch_id: int
    reason: str
    now: float
    request_sent: bool = True
    """False when the request never left (no connection): safe to send elsewhere, whatever
    the method. True when the upstream may have received it."""


@dataclass(frozen=True, slots=True)
class FetchCompleted:
    """The whole body of fetch `fetch_id` arrived: `size` bytes, as many as it announced."""

    fetch_id: int
    size: int
    now: float
    body: bytes | None = None
    """Only for fetches started with `want_body` (playlists the node itself reads)."""


@dataclass(frozen=True, slots=True)
class ClientGone:
    """Request `request_id` was abandoned by its client before it was answered."""

    request_id: int
    now: float


@dataclass(frozen=True, slots=True)
class PurgeRequested:
    """An operator purges one path, or with `whole_video`, everything under `/v/<video>/`."""

    path: str
    whole_video: bool
    now: float


@dataclass(frozen=True, slots=True)
class TrendingHinted:
    """The origin says these videos are going viral: admit them and pre-warm their starts."""

    video_ids: tuple[str, ...]
    now: float


@dataclass(frozen=True, slots=True)
class ProbeCompleted:
    """A health probe of parent `parent` finished."""

    parent: str
    healthy: bool
    now: float


@dataclass(frozen=True, slots=True)
class StoredObjectFound:
    """At start, the shell found object `object_id` in the disk tier (its `Demote` record)."""

    object_id: str
    record: Mapping[str, object]
    """The metadata `Demote` asked to persist."""
    now: float


@dataclass(frozen=True, slots=True)
class StoredObjectLost:
    """The shell could not read stored object `object_id` (its disk record was damaged or
    removed): forget it, so the next request fetches it again."""

    object_id: str
    now: float


@dataclass(frozen=True, slots=True)
class ShuttingDown:
    """The node is stopping gracefully: keep what memory holds, where a restart can find it."""

    now: float


Event = (
    RequestReceived
    | UpstreamResponded
    | UpstreamFailed
    | FetchCompleted
    | ClientGone
    | PurgeRequested
    | TrendingHinted
    | ProbeCompleted
    | StoredObjectFound
    | StoredObjectLost
    | ShuttingDown
)
