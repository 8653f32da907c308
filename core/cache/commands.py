"""What a cache node asks its shell to do: the commands `CacheNode` returns.

The shell executes them in order and reports back with events. It owns the bytes (the memory
tier, the body buffers of fetches in flight); the node owns every decision about them.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from core.cache.events import Fields


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one client request is answered from a body: status, fields and which bytes."""

    request_id: int
    status: int
    headers: Fields
    byte_range: tuple[int, int] | None = None
    """Inclusive first and last byte to send; None sends the whole body."""
    with_body: bool = True
    """False for HEAD and 304: the fields only."""


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer a request with a small body the node made (an error, a 304)."""

    request_id: int
    status: int
    headers: Fields
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ServeStored:
    """Answer a request from the stored object `object_id`."""

    object_id: str
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class FetchUpstream:
    """Send a request upstream to `target` (a base URL) and report with events `fetch_id`."""

    fetch_id: int
    target: str
    method: str
    path: str
    """Path and query to request."""
    headers: Fields
    want_body: bool = False
    """Hand the body back in `FetchCompleted` (the node reads it); only for small objects."""
    body_of: int | None = None
    """Send the body of this client request (an unsafe method passed through)."""


@dataclass(frozen=True, slots=True)
class StreamFetch:
    """Start sending fetch `fetch_id`'s body to these requests while it arrives.

    Also send it to any request later attached with `AttachToFetch`, from the first byte: the
    shell keeps the body received so far until the fetch ends.
    """

    fetch_id: int
    deliveries: tuple[Delivery, ...]


@dataclass(frozen=True, slots=True)
class AttachToFetch:
    """Answer one more request from fetch `fetch_id`'s body (which may be partly sent already)."""

    fetch_id: int
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class AbortFetch:
    """Fetch `fetch_id` failed mid-body: cut every stream fed from it (clients see truncation)
    and drop its buffer. Nothing of it is stored."""

    fetch_id: int


@dataclass(frozen=True, slots=True)
class StoreFetched:
    """Keep fetch `fetch_id`'s complete body as the stored object `object_id`."""

    fetch_id: int
    object_id: str


@dataclass(frozen=True, slots=True)
class ReleaseFetch:
    """Fetch `fetch_id` is over and its body is not kept: free its buffer."""

    fetch_id: int


@dataclass(frozen=True, slots=True)
class DropStored:
    """Delete these stored objects (evicted, purged or replaced) from memory and disk."""

    object_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Demote:
    """Move stored object `object_id` from memory to the disk tier, persisting `record` beside
    its body (what a restarted node needs to know it again: `StoredObjectFound`)."""

    object_id: str
    record: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Promote:
    """Load stored object `object_id` from the disk tier into memory (it stays on disk)."""

    object_id: str


@dataclass(frozen=True, slots=True)
class ProbeParent:
    """Check whether parent `parent` is healthy again and report `ProbeCompleted`."""

    parent: str


Command = (
    Respond
    | ServeStored
    | FetchUpstream
    | StreamFetch
    | AttachToFetch
    | AbortFetch
    | StoreFetched
    | ReleaseFetch
    | DropStored
    | Demote
    | Promote
    | ProbeParent
)
