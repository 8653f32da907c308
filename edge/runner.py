"""Executes a `CacheNode`'s commands: upstream fetches, the memory tier, answers to clients.

The node decides; this module moves bytes. Each client request waits on a future that a command
resolves with an `Answer`; each upstream fetch is a task whose body accumulates in a buffer that
any number of client streams read from, at their own pace, while it is still arriving.
"""

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from core.cache.commands import (
    AbortFetch,
    AttachToFetch,
    Command,
    Delivery,
    Demote,
    DropStored,
    FetchUpstream,
    ProbeParent,
    Promote,
    ReleaseFetch,
    Respond,
    ServeStored,
    StoreFetched,
    StreamFetch,
)
from core.cache.events import (
    ClientGone,
    Event,
    FetchCompleted,
    ProbeCompleted,
    RequestReceived,
    ShuttingDown,
    StoredObjectFound,
    StoredObjectLost,
    UpstreamFailed,
    UpstreamResponded,
)
from core.cache.node import CacheNode, PlainHit
from core.http.caching import Fields, combine_fields
from edge.disk import CorruptRecord, DiskTier, OpenRecord

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
# Fields that frame the message itself (RFC 9112 section 6), set by aiohttp for what it sends.
_FRAMING_FIELDS = frozenset({"content-length", "transfer-encoding", "expect"})


class FetchAborted(Exception):
    """The upstream fetch a client's stream follows failed before the bytes it needs arrived."""


class FetchBody:
    """The body of one upstream fetch as it arrives; readers follow it from any offset."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.complete = False
        self.failed = False
        self._grew = asyncio.Event()

    def extend(self, chunk: bytes) -> None:
        self.buffer += chunk
        self._wake()

    def finish(self, *, failed: bool) -> None:
        self.complete = not failed
        self.failed = failed
        self._wake()

    def _wake(self) -> None:
        self._grew.set()
        self._grew = asyncio.Event()

    async def read_from(self, offset: int, end: int | None) -> bytes | None:
        """Bytes from `offset` up to `end` (exclusive), waiting for them; None at the end.

        Raises `FetchAborted` if the fetch failed before the bytes arrived.
        """
        while True:
            limit = len(self.buffer) if end is None else min(end, len(self.buffer))
            if offset < limit:
                return bytes(memoryview(self.buffer)[offset : min(limit, offset + CHUNK_SIZE)])
            if self.failed:
                raise FetchAborted("upstream fetch failed mid-body")
            if self.complete or (end is not None and offset >= end):
                return None
            await self._grew.wait()


@dataclass(frozen=True)
class Answer:
    """How a client request is answered: a delivery plus where its bytes come from."""

    delivery: Delivery
    body: bytes | FetchBody | OpenRecord | None = None
    """Complete bytes (synthetic or stored), a fetch still arriving, a disk-tier record (the
    shell sends its body and closes it), or nothing."""

    def complete_body(self) -> bytes | None:
        """The body of an answer that is not a fetch, as bytes (a record is read and closed):
        for shells that cannot send from a file."""
        body = self.body
        assert not isinstance(body, FetchBody)
        if isinstance(body, OpenRecord):
            try:
                return body.read_body()
            finally:
                body.close()
        return body


@dataclass
class _FetchRun:
    task: asyncio.Task[None] | None = None
    body: FetchBody = field(default_factory=FetchBody)
    released: bool = False


class CommandRunner:
    """Owns the memory tier, the fetches in flight and the clients waiting for answers."""

    def __init__(
        self,
        node: CacheNode,
        session: aiohttp.ClientSession,
        *,
        request_timeout: aiohttp.ClientTimeout,
        clock: Callable[[], float] = time.time,
        total_timeout: float | None = None,
        disk: DiskTier | None = None,
    ) -> None:
        self.node = node
        self.memory: dict[str, bytes] = {}
        self._disk = disk
        self._demoting: dict[str, tuple[int, bytes]] = {}
        """Bodies on their way to disk, by the demotion that sent them: still served from here
        until the record is written."""
        self._demotions = itertools.count(1)
        self._disk_writes: dict[str, asyncio.Task[None]] = {}
        self._last_disk_read: tuple[str, bytes] | None = None
        self._requests: dict[int, RequestReceived] = {}
        """Requests not yet answered, to ask the node again if a stored body turns out lost."""
        self._session = session
        self._timeout = request_timeout
        self._clock = clock
        self._total_timeout = total_timeout
        """Seconds a whole upstream response may take, body included (`request_timeout` bounds
        only the connection and each gap between reads: a dripping upstream never trips it)."""
        self._waiting: dict[int, asyncio.Future[Answer]] = {}
        self._request_ids = itertools.count(1)
        self._asking: int | None = None
        """The request `ask` is feeding: its answer, if given at once, goes to `_immediate`."""
        self._immediate: Answer | None = None
        self.bytes_served = 0
        self.flush_on_close = True
        """Demote the memory tier to disk on close (not when handing over to a new generation
        of workers: they have indexed the disk tier already, and would not see the records)."""
        self.request_bodies: dict[int, bytes] = {}
        """Bodies of unsafe requests, forwarded by their pass-through fetch."""
        self._fetches: dict[int, _FetchRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def now(self) -> float:
        return self._clock()

    @property
    def open_requests(self) -> int:
        """Client requests waiting for the node's answer."""
        return len(self._waiting)

    @property
    def open_fetches(self) -> int:
        """Upstream fetches whose body buffer is still held."""
        return len(self._fetches)

    def ask(
        self, method: str, target: str, headers: Fields, body: bytes | None = None
    ) -> tuple[int, "Answer | asyncio.Future[Answer]"]:
        """Hand a client request to the node: its id, and its answer when the node gave it at
        once (a hit, a synthetic answer, a join to a stream in flight), else a future of it.

        `body`: what an unsafe request carries, forwarded by its pass-through fetch. Every
        shell (HTTP/1.1, aiohttp, HTTP/3) asks here, so request ids are unique per node."""
        request_id = next(self._request_ids)
        event = RequestReceived(request_id, method, target, headers, self._clock())
        if body is None:
            commands = self.node.handle(event)
            if len(commands) == 1 and type(commands[0]) is ServeStored:
                # A memory hit, the common case: answered here, without the bookkeeping
                # `execute` keeps for answers that come later (nor a timer to re-arm: a
                # request changes no parent's health).
                stored = self.memory.get(commands[0].object_id)
                if stored is not None:
                    return request_id, Answer(commands[0].delivery, stored)
        else:
            self.request_bodies[request_id] = body
            commands = None
        self._asking = request_id
        try:
            self._requests[request_id] = event
            self.execute(self.node.handle(event) if commands is None else commands)
        finally:
            self._asking = None
        answer = self._immediate
        if answer is not None:
            self._immediate = None
            return request_id, answer
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return request_id, future

    def ask_plain(self, target: str, method: str) -> tuple[PlainHit, bytes] | None:
        """A plain request (`CacheNode.is_plain_request`) answered by the node's `plain_hit`:
        the hit and the stored bytes, counted as a request like `ask`'s; None when it must be
        asked. No request id: nothing can come later for it."""
        hit = self.node.plain_hit(target, method, self._clock())
        if hit is None:
            return None
        # A hit the node gives is on an object in memory: the runner stored it there.
        return hit, self.memory[hit[0]]

    def client_gone(self, request_id: int) -> None:
        self._requests.pop(request_id, None)
        self.request_bodies.pop(request_id, None)
        if self._waiting.pop(request_id, None) is not None:
            self.feed(ClientGone(request_id, self.now()))

    def feed(self, event: Event) -> None:
        """Hand an event to the node and execute what it commands."""
        if isinstance(event, RequestReceived):
            self._requests[event.request_id] = event
        self.execute(self.node.handle(event))

    def restore_from_disk(self, share: int = 0, shares: int = 1) -> int:
        """Tell the node about every whole record of its share of the disk tier (at start);
        how many. Worker `share` of `shares` takes the records `DiskTier.scan` gives it."""
        if self._disk is None:
            return 0
        found = 0
        for record in self._disk.scan(share, shares):
            self.feed(StoredObjectFound(record.object_id, record.metadata, self.now()))
            found += 1
        return found

    def execute(self, commands: Iterable[Command]) -> None:
        commands = list(commands)
        for position, command in enumerate(commands):
            match command:
                case Respond(request_id, status, headers, body):
                    self._answer(Answer(Delivery(request_id, status, headers), body))
                case ServeStored(object_id, delivery):
                    # A disk hit that stays on disk is sent from its record; one promoted
                    # next is read once, for memory and for this answer.
                    promoting = commands[position + 1 : position + 2] == [Promote(object_id)]
                    stored: bytes | OpenRecord | None = (
                        self._stored_body(object_id)
                        if promoting
                        else self._body_in_memory(object_id) or self._open_record(object_id)
                    )
                    if stored is None:
                        self._lost(object_id, delivery.request_id)
                    else:
                        self._answer(Answer(delivery, stored))
                case FetchUpstream():
                    self._start_fetch(command)
                case StreamFetch(fetch_id, deliveries):
                    for delivery in deliveries:
                        self._answer(Answer(delivery, self._fetches[fetch_id].body))
                case AttachToFetch(fetch_id, delivery):
                    self._answer(Answer(delivery, self._fetches[fetch_id].body))
                case AbortFetch(fetch_id):
                    self._end_fetch(fetch_id).body.finish(failed=True)
                case StoreFetched(fetch_id, object_id):
                    self.memory[object_id] = bytes(self._end_fetch(fetch_id).body.buffer)
                case ReleaseFetch(fetch_id):
                    self._end_fetch(fetch_id)
                case DropStored(object_ids):
                    for object_id in object_ids:
                        self.memory.pop(object_id, None)
                        self._demoting.pop(object_id, None)
                        self._delete_record(object_id)
                case Demote(object_id, record):
                    self._demote(object_id, record)
                case Promote(object_id):
                    promoted = self._stored_body(object_id)
                    if promoted is None:
                        self.feed(StoredObjectLost(object_id, self.now()))
                    else:
                        self.memory[object_id] = promoted
                case ProbeParent(parent):
                    self._spawn(self._probe(parent))
        self._arm_timer()

    def _stored_body(self, object_id: str) -> bytes | None:
        """A stored object's body from memory, a pending disk write, or the disk tier."""
        body = self._body_in_memory(object_id)
        if body is not None:
            return body
        record = self._open_record(object_id)
        if record is None:
            return None
        try:
            body = record.read_body()
        finally:
            record.close()
        self._last_disk_read = (object_id, body)
        return body

    def _body_in_memory(self, object_id: str) -> bytes | None:
        body = self.memory.get(object_id)
        if body is None and object_id in self._demoting:
            body = self._demoting[object_id][1]
        last_read = self._last_disk_read
        if body is None and last_read is not None and last_read[0] == object_id:
            return last_read[1]  # the read of the hit that now promotes it
        return body

    def _open_record(self, object_id: str) -> OpenRecord | None:
        if self._disk is None:
            return None
        try:
            return self._disk.open(object_id)
        except CorruptRecord as exc:
            log.warning(
                "%s: disk record of %r dropped: %s", self.node.settings.name, object_id, exc
            )
            return None

    def _lost(self, object_id: str, request_id: int) -> None:
        """A stored body could not be read: the node forgets it and decides the request again."""
        self.feed(StoredObjectLost(object_id, self.now()))
        original = self._requests.get(request_id)
        if original is not None:
            self.feed(
                RequestReceived(
                    request_id, original.method, original.target, original.headers, self.now()
                )
            )

    def _demote(self, object_id: str, record: Mapping[str, object]) -> None:
        body = self.memory.pop(object_id, None)
        if body is None or self._disk is None:
            return
        demotion = next(self._demotions)
        self._demoting[object_id] = (demotion, body)
        disk = self._disk
        # An object promoted and demoted again while its first record is being written: the
        # writes of one record go one after the other, and only the last decides its fate.
        previous = self._disk_writes.get(object_id)

        async def write() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            try:
                await asyncio.to_thread(disk.write, object_id, dict(record), body)
            except OSError as exc:
                log.warning(
                    "%s: disk write of %r failed: %r", self.node.settings.name, object_id, exc
                )
                if self._demoting.get(object_id, (None,))[0] == demotion:
                    del self._demoting[object_id]
                    self.feed(StoredObjectLost(object_id, self.now()))
                return
            finally:
                if self._disk_writes.get(object_id) is task:
                    del self._disk_writes[object_id]
            pending = self._demoting.get(object_id)
            if pending is None:
                # Dropped while it was being written: the record must not outlive the drop.
                self._delete_record(object_id)
            elif pending[0] == demotion:
                del self._demoting[object_id]

        task = self._disk_writes[object_id] = self._spawn(write())

    def _delete_record(self, object_id: str) -> None:
        if self._disk is None or object_id in self._disk_writes:
            return  # a write in progress deletes its own record when it finds it dropped
        disk = self._disk

        async def delete() -> None:
            await asyncio.to_thread(disk.delete, object_id)

        self._spawn(delete())

    def _answer(self, answer: Answer) -> None:
        request_id = answer.delivery.request_id
        self._requests.pop(request_id, None)
        if self.request_bodies:
            self.request_bodies.pop(request_id, None)
        if request_id == self._asking:
            self._immediate = answer
            return
        future = self._waiting.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(answer)

    def _end_fetch(self, fetch_id: int) -> _FetchRun:
        run = self._fetches.pop(fetch_id, None) or _FetchRun()
        run.released = True
        return run

    def _spawn(self, coroutine: "asyncio._CoroutineLike[None]") -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        # Keep a reference: the loop holds tasks only weakly.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start_fetch(self, command: FetchUpstream) -> None:
        run = _FetchRun()
        self._fetches[command.fetch_id] = run
        run.task = self._spawn(self._fetch(command, run))

    async def _fetch(self, command: FetchUpstream, run: _FetchRun) -> None:
        # The target goes upstream byte for byte (encoded=True: no requoting of the path or the
        # query, which may carry a signed token).
        url = URL(command.target.rstrip("/") + command.path, encoded=True)
        body = None if command.body_of is None else self.request_bodies.get(command.body_of)
        # Framing is this message's own: aiohttp sets Content-Length from `body`. The client's
        # Content-Length (of a GET with a body, say) would make the upstream wait for a body
        # that never comes, or read the next request on the connection as this one's body.
        headers = {k: v for k, v in command.headers.items() if k not in _FRAMING_FIELDS}
        loop = asyncio.get_running_loop()
        total = self._total_timeout
        deadline = None if total is None else loop.time() + total
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._session.request(
                    command.method,
                    url,
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    timeout=self._timeout,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("%s: %s %s failed: %r", self.node.settings.name, command.method, url, exc)
            if self._fetches.get(command.fetch_id) is run:
                del self._fetches[command.fetch_id]
            if not run.released:
                # A refused or unreachable connection carried nothing: any method may go on.
                sent = not isinstance(exc, aiohttp.ClientConnectorError)
                self.feed(UpstreamFailed(command.fetch_id, repr(exc), self.now(), sent))
            return
        async with response:
            self.feed(
                UpstreamResponded(
                    command.fetch_id,
                    response.status,
                    combine_fields(response.headers.items()),
                    self.now(),
                )
            )
            await self._read_body(command, run, response, deadline)

    async def _read_body(
        self,
        command: FetchUpstream,
        run: _FetchRun,
        response: aiohttp.ClientResponse,
        deadline: float | None = None,
    ) -> None:
        # RFC 9110 section 8.6: the Content-Length of a response to HEAD, or of a 304, is the
        # length the GET's content would have; no content follows (nor after a 1xx or a 204).
        no_content = command.method == "HEAD" or response.status in (204, 304)
        declared = None if no_content else response.content_length
        try:
            async with asyncio.timeout_at(deadline):
                async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                    if run.released:
                        return  # answered otherwise (a 304, a retried 5xx): nobody reads it
                    run.body.extend(chunk)
            if declared is not None and len(run.body.buffer) != declared:
                raise aiohttp.ClientPayloadError(
                    f"short body: {len(run.body.buffer)} of {declared} bytes"
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("%s: body of %s failed: %r", self.node.settings.name, command.path, exc)
            if not run.released:
                self.feed(UpstreamFailed(command.fetch_id, repr(exc), self.now()))
            run.body.finish(failed=True)
            return
        if run.released:
            run.body.finish(failed=False)
            return
        body = bytes(run.body.buffer) if command.want_body else None
        # Mark complete before the node stores it, so readers never wait on a stored body.
        run.body.finish(failed=False)
        self.feed(FetchCompleted(command.fetch_id, len(run.body.buffer), self.now(), body))

    async def _probe(self, parent: str) -> None:
        try:
            async with self._session.get(
                parent.rstrip("/") + "/healthz", timeout=self._timeout
            ) as response:
                healthy = response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            healthy = False
        self.feed(ProbeCompleted(parent, healthy, self.now()))

    def _arm_timer(self) -> None:
        deadline = self.node.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, deadline - self.now())
            self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.execute(self.node.on_timer(self.now()))

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # What memory holds goes to the disk tier, and records being written finish: a restart
        # finds the warm cache again.
        if self.flush_on_close:
            self.feed(ShuttingDown(self.now()))
        await asyncio.gather(*self._disk_writes.values(), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
