"""The cache node's HTTP/1.1 listener: a lean protocol for content requests, aiohttp for the rest.

A cache hit is the common case and the one that must be cheap: one parse of the request head,
one decision of the node (`CommandRunner.ask`), one write. So content requests are read and
answered here, on the connection's protocol object, with no task, no request object and no
middleware per request: a hit answered at once is written before `data_received` returns. An
answer that is not ready (a miss, a revalidation) is awaited by one task per connection, and a
body still arriving from upstream is streamed as it comes, with the transport's flow control.

Only what this parser reads strictly is handled here: an origin-form request line, well-formed
field lines, and a body only with a Content-Length (up to `MAX_FORWARDED_BODY`). Anything else,
and every route that is not content (`/_shoal/...`, `/healthz`, `/readyz`, `/metrics`), is handed
with its connection to aiohttp's request handler for the rest of the connection's life, at a
request boundary and with the bytes not yet consumed: admin routes keep their aiohttp handlers,
and anything unusual or malformed (chunked bodies, `Expect`, `Upgrade`, obsolete line folding,
an over-long head) gets aiohttp's answer, exactly as if aiohttp had read it from the start.

The client limits of `edge.limits` apply to both: connections are counted and refused past
`max_connections` before anything is read; a request head (and its body) must arrive within
`client_timeout` of its first byte; an idle keep-alive connection is closed after
`keepalive_timeout`; the per-client rate limit answers 429.
"""

import asyncio
import contextlib
import http
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from core.cache.node import NOT_PLAIN_FIELDS, CacheNode, PlainHit
from core.http.conditional import http_date
from edge.disk import OpenRecord
from edge.limits import ClientLimits, LimitedConnection, Listener
from edge.metrics import LatencyByKind, LatencySeries
from edge.runner import Answer, CommandRunner, FetchAborted, FetchBody

MAX_FORWARDED_BODY = 1024 * 1024
"""Largest request body read here (an unsafe request's, forwarded upstream); aiohttp answers a
larger one (413 past the application's `client_max_size`)."""
MAX_FIELDS = 128
"""Field lines a head may have here; aiohttp answers a head with more."""
ADMIN_PATHS = ("/_shoal/", "/healthz", "/readyz", "/metrics")
"""Routes of aiohttp's application rather than the node's content."""
RATE_LIMIT_EXEMPT = ("/healthz", "/readyz")
DEADLINE_SWEEP_SECONDS = 0.1
"""How often the connections' deadlines are checked: slow clients and idle connections are
closed within this long after their deadline."""
MAX_PIPELINED_BYTES = 256 * 1024
"""Bytes of further requests buffered while one is answered; reading pauses past it."""
LARGE_BODY_BYTES = 64 * 1024
"""Bodies from this size on go to the transport beside their head, not copied into one write."""
MAX_REPLAYS = 1024
"""Distinct request lines whose plain-hit answers are kept rendered (`_Replay`), and distinct
whole heads known to be replays of them."""
REPLAY_BODY_BYTES = 4096
"""Bodies up to this size are kept in the rendered answer (a playlist); larger ones are joined
to it from the memory tier on each write, so no replay keeps an evicted object alive."""

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = rb"(?:" + _TOKEN + rb") /[^\x00-\x20\x7f]* HTTP/1\.[01]"
# RFC 9112 section 5: field-name ":" OWS field-value OWS, the value without control characters
# other than HTAB (obs-text allowed). No bare CR or LF can hide in a head this matches.
_FIELD_LINE = rb"(?:" + _TOKEN + rb"):[^\x00-\x08\x0a-\x1f\x7f]*"
_HEAD = re.compile(_REQUEST_LINE + rb"(?:\r\n" + _FIELD_LINE + rb")*")
_WHOLE_REQUEST_LINE = re.compile(_REQUEST_LINE)
# The beginning of a request line, before its CRLF has arrived.
_PARTIAL_REQUEST_LINE = re.compile(
    rb"(?:" + _TOKEN + rb"(?: /[^\x00-\x20\x7f]*(?: [HTP/01.]{0,8})?)?)?\r?"
)
_HANDED_OFF_FIELDS = frozenset({"transfer-encoding", "expect", "upgrade"})
# A head with none of these fields is answered alike whatever else it carries (a plain hit never
# varies): its request line alone picks its `_Replay`.
_NOT_REPLAYED = re.compile(
    rb"\r\n(?:"
    + b"|".join(
        re.escape(name.encode())
        for name in sorted({*NOT_PLAIN_FIELDS, *_HANDED_OFF_FIELDS, "connection", "content-length"})
    )
    + rb"):",
    re.IGNORECASE,
)
_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n" for status in http.HTTPStatus
}
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(slots=True)
class _Replay:
    """A request line seen before in a plain (`CacheNode.is_plain_request`) HTTP/1.1 keep-alive
    request answered 200. A later head with that line, arriving alone, well-formed and with no
    field that changes a plain hit's answer (`_NOT_REPLAYED`), is not parsed into fields; and
    while the node answers it with an equal `PlainHit`, the answer is not rendered again either
    (Age and the ttl change once a second, so it is rendered about once a second)."""

    target: str
    method: str
    latency: LatencySeries
    hit: PlainHit | None = None
    rendered: bytes = b""
    """The head of `hit`'s answer, and its body when that is at most `REPLAY_BODY_BYTES`."""
    body_rendered: bool = False


class EdgeListener(Listener):
    """Makes the protocol of each connection of a cache node's listener, and drains them."""

    def __init__(
        self, limits: ClientLimits, runner: Callable[[], CommandRunner], latency: LatencyByKind
    ) -> None:
        self.limits = limits
        self.runner = runner
        self.latency = latency
        self.server: web.Server | None = None
        self.open: set[EdgeConnection] = set()
        self._date = ("", -1)
        self._sweep: asyncio.TimerHandle | None = None
        self.extra_fields = ""
        """Field lines every response carries (`Alt-Svc` once HTTP/3 listens)."""
        self.replays: dict[bytes, _Replay] = {}
        """By request line."""
        self.replayed_heads: dict[bytes, _Replay] = {}
        """Whole heads checked once (`EdgeConnection._replay_for`): players repeat theirs."""

    def add_response_field(self, name: str, value: str) -> None:
        self.extra_fields += f"{name}: {value}\r\n"
        self.replays.clear()  # rendered without it
        self.replayed_heads.clear()

    def remember_replay(self, request_line: bytes, target: str, method: str) -> None:
        if len(self.replays) >= MAX_REPLAYS:
            self.replays.clear()  # targets come from clients: stay bounded
            self.replayed_heads.clear()
        self.replays[request_line] = _Replay(target, method, self.latency.of_path(target))

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.BaseProtocol]:
        self.server = server
        return lambda: EdgeConnection(self)

    def watch_deadlines(self) -> None:
        """Make sure the sweep runs while connections are open."""
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(
                DEADLINE_SWEEP_SECONDS, self._sweep_deadlines
            )

    def _sweep_deadlines(self) -> None:
        self._sweep = None
        now = asyncio.get_running_loop().time()
        for connection in [c for c in self.open if c.deadline <= now]:
            connection.deadline_passed()
        if self.open:
            self.watch_deadlines()

    async def drain(self, grace: float) -> None:
        for connection in list(self.open):
            connection.close_when_idle()
        deadline = time.monotonic() + grace
        while self.open and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.open):
            connection.abort()

    def date_line(self) -> str:
        """`Date: <now>` for answers without a Date of their own, formatted once a second."""
        now = int(time.time())
        line, second = self._date
        if second != now:
            line = f"Date: {http_date(now)}\r\n"
            self._date = (line, now)
        return line


class EdgeConnection(LimitedConnection):
    """One client connection: lean while its requests are content, aiohttp's once handed off."""

    def __init__(self, factory: EdgeListener) -> None:
        self._factory = factory
        self._limits = factory.limits
        self._runner: CommandRunner | None = None
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._handler: RequestHandler | None = None
        self._busy = False
        """A request is being answered: the next one waits (responses go out in order)."""
        self._task: asyncio.Task[None] | None = None
        self._waiting_for: int | None = None
        """The request whose answer the task awaits, reported gone if the client leaves."""
        self._loop = asyncio.get_running_loop()
        self.deadline = math.inf
        """Loop time at which `_on_deadline` runs (a request too slow, or an idle wait over)."""
        self._on_deadline: Callable[[], None] = self._head_timed_out
        self._timing_head = False
        """The timer is the deadline of a request being received (else: of an idle wait)."""
        self._awaiting_head = True
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._close_when_idle = False
        self._client = ""
        self._http11 = True
        """The version of the request being answered (answers go out one at a time)."""

    # ---- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        limits = self._limits
        if limits.open_connections >= limits.max_connections:
            limits.refused_connections += 1
            transport.abort()
            return
        limits.open_connections += 1
        self._transport = transport
        self._runner = self._factory.runner()
        peer = transport.get_extra_info("peername")
        self._client = peer[0] if isinstance(peer, tuple) else ""
        self._factory.open.add(self)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        if self._handler is not None:
            if self._awaiting_head and self.deadline == math.inf:
                self._arm_head_deadline()
            self._handler.data_received(data)
            return
        if not self._buffer and not self._busy:
            replay = self._replay_for(data)
            if replay is not None and self._replay(replay):
                return
        # No deadline yet: a request that arrives whole (the usual case) never needs one;
        # `_serve_buffered` starts it when it finds the head or body incomplete.
        self._buffer += data
        if self._busy:
            if len(self._buffer) > MAX_PIPELINED_BYTES and not self._reading_paused:
                self._reading_paused = True
                self._transport.pause_reading()
            return
        self._serve_buffered()

    def eof_received(self) -> bool | None:
        if self._handler is not None:
            self._handler.eof_received()
        return None  # the transport closes itself

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._handler is not None:
            self._handler.resume_writing()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return
        self._transport = None
        self._limits.open_connections -= 1
        self._factory.open.discard(self)
        self._disarm()
        if self._waiting_for is not None and self._runner is not None:
            self._runner.client_gone(self._waiting_for)
            self._waiting_for = None
        if self._task is not None:
            self._task.cancel()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_exception(ConnectionResetError("client gone"))
        if self._handler is not None:
            self._handler.connection_lost(exc)

    # ---- hooks of the limits middleware (handed-off connections) ----------------------------

    def head_received(self) -> None:
        """aiohttp parsed a complete request head: its handler starts."""
        self._awaiting_head = False
        self._disarm()

    def request_done(self) -> None:
        """aiohttp's handler returned: the next bytes are the next request's head."""
        self._awaiting_head = True

    @property
    def handed_off(self) -> bool:
        """Whether aiohttp serves this connection now."""
        return self._handler is not None

    # ---- shutdown -----------------------------------------------------------------------------

    def close_when_idle(self) -> None:
        self._close_when_idle = True
        if not self._busy and self._transport is not None and self._handler is None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # ---- reading requests --------------------------------------------------------------------

    def _serve_buffered(self) -> None:
        """Answer the complete requests buffered, in order, until one must be waited for."""
        buffer = self._buffer
        transport = self._transport
        while buffer and not self._busy and transport is not None and not transport.is_closing():
            end_of_head = buffer.find(b"\r\n\r\n")
            if end_of_head < 0:
                if len(buffer) > self._limits.max_header_bytes * 2 or not _may_be_request(buffer):
                    # aiohttp answers garbage (a TLS hello, say) or an over-long head at once,
                    # without waiting for a head that never ends.
                    self._hand_off()
                elif not self._timing_head:
                    self._arm_head_deadline()
                return
            request = self._parse_head(bytes(buffer[:end_of_head]))
            if request is None:
                self._hand_off()
                return
            method, target, fields, keep_alive, body_length = request
            end = end_of_head + 4 + body_length
            if len(buffer) < end:
                if not self._timing_head:
                    self._arm_head_deadline()
                return
            body = bytes(buffer[end_of_head + 4 : end]) if body_length else None
            # The request came alone: its bytes may come alone again (`_Replay`).
            alone = bytes(buffer) if end == len(buffer) else None
            del buffer[:end]
            self._disarm()
            self._serve(method, target, fields, keep_alive, body, alone)
        if transport is None or transport.is_closing() or self._busy:
            return
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if not buffer:
            if self._close_when_idle:
                transport.close()
            elif self._limits.keepalive_timeout > 0:
                self._arm_idle_deadline()

    def _parse_head(self, head: bytes) -> tuple[str, str, dict[str, str], bool, int] | None:
        """(method, target, fields, keep-alive, body length) of a head this parser takes;
        None for one it leaves to aiohttp. Notes the request's version in `_http11`."""
        # One regular expression checks the whole head's grammar; the lines are then split
        # knowing what they hold.
        if _HEAD.fullmatch(head) is None:
            return None
        # Latin-1 keeps every byte (obs-text) as it came; values only travel upstream again or
        # are compared with ASCII.
        lines = head.decode("latin-1").split("\r\n")
        if len(lines) > MAX_FIELDS + 1 or max(map(len, lines)) > self._limits.max_header_bytes:
            return None
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.lower()
            value = value.strip(" \t")
            fields[name] = f"{fields[name]}, {value}" if name in fields else value
        method, target, version = lines[0].split(" ")
        if target.startswith(ADMIN_PATHS) or not _HANDED_OFF_FIELDS.isdisjoint(fields):
            return None
        body_length = 0
        declared = fields.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()) or len(declared) > 15:
                return None  # including "5, 5": aiohttp decides on repeated lengths
            body_length = int(declared)
            if body_length > MAX_FORWARDED_BODY:
                return None
        connection = fields.get("connection", "").lower()
        self._http11 = version == "HTTP/1.1"
        keep_alive = "close" not in connection if self._http11 else "keep-alive" in connection
        return method, target, fields, keep_alive, body_length

    # ---- answering -----------------------------------------------------------------------------

    def _serve(
        self,
        method: str,
        target: str,
        fields: dict[str, str],
        keep_alive: bool,
        body: bytes | None,
        alone: bytes | None = None,
    ) -> None:
        started = time.perf_counter()
        keep_alive = keep_alive and self._limits.keepalive_timeout > 0 and not self._close_when_idle
        if not target.startswith(RATE_LIMIT_EXEMPT) and self._rate_limited(keep_alive):
            return
        runner = self._runner
        assert runner is not None
        if method in ("GET", "HEAD"):
            body = None
        request_id, answer = runner.ask(method, target, fields, body)
        head_only = method == "HEAD"
        if isinstance(answer, Answer) and not isinstance(answer.body, FetchBody):
            self._write_complete(answer, keep_alive, head_only)
            self._factory.latency.of_path(target).observe(time.perf_counter() - started)
            if (
                alone is not None
                and keep_alive
                and self._http11
                and answer.delivery.status == 200
                and CacheNode.is_plain_request(method, fields)
            ):
                request_line = alone[: alone.index(b"\r\n")]
                if request_line not in self._factory.replays:
                    self._factory.remember_replay(request_line, target, method)
            return
        self._busy = True
        self._waiting_for = request_id
        self._task = asyncio.get_running_loop().create_task(
            self._answer_later(answer, keep_alive, head_only, target, started)
        )

    def _rate_limited(self, keep_alive: bool) -> bool:
        """Whether the client is over its rate: then it was answered 429."""
        limiter = self._limits.limiter
        if limiter is None:
            return False
        now = self._limits.clock()
        if limiter.allow(self._client, now):
            return False
        self._limits.rate_limited += 1
        wait = max(1, math.ceil(limiter.retry_after(self._client, now)))
        head = (
            f"HTTP/1.1 429 Too Many Requests\r\nRetry-After: {wait}\r\n"
            "Cache-Control: no-store\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 18\r\n"
        )
        self._write(head, b"too many requests\n", keep_alive)
        return True

    def _replay_for(self, data: bytes) -> _Replay | None:
        """The replay of `data` if it is one whole request head that may be replayed."""
        factory = self._factory
        replay = factory.replayed_heads.get(data)
        if replay is not None:
            return replay
        line_end = data.find(b"\r\n")
        if line_end < 0:
            return None
        replay = factory.replays.get(data[:line_end])
        if (
            replay is None
            or data.find(b"\r\n\r\n") != len(data) - 4
            or len(data) > self._limits.max_header_bytes
            or data.count(b"\r\n") > MAX_FIELDS + 2
            or _HEAD.fullmatch(data, 0, len(data) - 4) is None
            or _NOT_REPLAYED.search(data) is not None
        ):
            return None
        if len(factory.replayed_heads) >= MAX_REPLAYS:
            factory.replayed_heads.clear()  # heads come from clients: stay bounded
        factory.replayed_heads[data] = replay
        return replay

    def _replay(self, replay: _Replay) -> bool:
        """Answer a request met before (`_Replay`) if the node gives it a plain hit; False
        when it must be read and asked as any other."""
        if self._close_when_idle or self._limits.keepalive_timeout <= 0:
            return False
        started = time.perf_counter()
        if self._rate_limited(keep_alive=True):
            return True
        runner = self._runner
        assert runner is not None
        found = runner.ask_plain(replay.target, replay.method)
        if found is None:
            return False
        hit, body = found
        sends_body = replay.method == "GET"
        if hit != replay.hit:
            fields = CacheNode.plain_hit_fields(hit)
            head = (self._head(200, fields, keep_alive=True, chunked=False) + "\r\n").encode(
                "utf-8", "surrogateescape"
            )
            replay.body_rendered = sends_body and len(body) <= REPLAY_BODY_BYTES
            replay.rendered = head + body if replay.body_rendered else head
            # A head carrying the Date of the moment stays valid for that second only.
            replay.hit = hit if "date" in fields else None
        transport = self._transport
        assert transport is not None
        if replay.body_rendered or not sends_body:
            transport.write(replay.rendered)
        elif len(body) >= LARGE_BODY_BYTES:
            transport.writelines((replay.rendered, body))
        else:
            transport.write(replay.rendered + body)
        if sends_body:
            runner.bytes_served += len(body)
        if self._write_paused:
            self._busy = True
            self._task = asyncio.get_running_loop().create_task(self._wait_for_drain())
        else:
            self._arm_idle_deadline()
        replay.latency.observe(time.perf_counter() - started)
        return True

    async def _answer_later(
        self,
        answer: "Answer | asyncio.Future[Answer]",
        keep_alive: bool,
        head_only: bool,
        path: str,
        started: float,
    ) -> None:
        try:
            if not isinstance(answer, Answer):
                answer = await answer
            self._waiting_for = None
            if isinstance(answer.body, FetchBody):
                await self._write_stream(answer, answer.body, keep_alive, head_only)
            else:
                self._write_complete(answer, keep_alive, head_only)
                if self._write_paused:
                    await self._drain()
        except (asyncio.CancelledError, ConnectionError):
            return  # the client left: connection_lost told the node
        finally:
            self._factory.latency.of_path(path).observe(time.perf_counter() - started)
            self._task = None
            self._busy = False
        if self._transport is not None and not self._transport.is_closing():
            self._serve_buffered()

    def _head(
        self, status: int, headers: Mapping[str, str], keep_alive: bool, chunked: bool
    ) -> str:
        parts = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n"]
        for field in headers.items():
            line = _FIELD_LINES.get(field)
            if line is None:
                line = f"{titled(field[0])}: {field[1]}\r\n"
                if len(_FIELD_LINES) >= MAX_FIELD_LINES:
                    _FIELD_LINES.clear()  # values come from upstreams: stay bounded
                _FIELD_LINES[field] = line
            parts.append(line)
        if "date" not in headers:
            parts.append(self._factory.date_line())
        parts.append(self._factory.extra_fields)
        if chunked:
            parts.append("Transfer-Encoding: chunked\r\n")
        if not keep_alive:
            parts.append("Connection: close\r\n")
        elif not self._http11:
            parts.append("Connection: keep-alive\r\n")
        return "".join(parts)

    def _write_complete(self, answer: Answer, keep_alive: bool, head_only: bool) -> None:
        delivery = answer.delivery
        body = answer.body
        assert not isinstance(body, FetchBody)
        if isinstance(body, OpenRecord):
            self._write_record(answer, body, keep_alive, head_only)
            return
        content: bytes | memoryview = b""
        if _sends_body(answer, head_only) and body:
            if delivery.byte_range is not None:
                first, last = delivery.byte_range
                content = memoryview(body)[first : last + 1]
            else:
                content = body
        if self._runner is not None:
            self._runner.bytes_served += len(content)
        head = self._head(delivery.status, delivery.headers, keep_alive, chunked=False)
        self._write(head, content, keep_alive)

    def _write_record(
        self, answer: Answer, record: OpenRecord, keep_alive: bool, head_only: bool
    ) -> None:
        """Send a disk hit from its record: the kernel copies the body from the file to the
        socket (`sendfile`) while the socket takes it; what it does not take at once is read
        and queued on the transport, which keeps the order and the flow control."""
        try:
            delivery = answer.delivery
            first, length = 0, 0
            if _sends_body(answer, head_only):
                first, last = delivery.byte_range or (0, record.info.body_length - 1)
                length = last + 1 - first
            head = self._head(delivery.status, delivery.headers, keep_alive, chunked=False)
            transport = self._transport
            if transport is None:
                return
            transport.write((head + "\r\n").encode("utf-8", "surrogateescape"))
            offset = record.info.body_offset + first
            sent = 0
            sock = transport.get_extra_info("socket")
            # Only with nothing queued in the transport may bytes bypass it.
            if length and sock is not None and transport.get_write_buffer_size() == 0:
                sent = _send_file(sock.fileno(), record.fd, offset, length)
            if sent < length:
                transport.write(os.pread(record.fd, length - sent, offset + sent))
            if self._runner is not None:
                self._runner.bytes_served += length
            self._response_written(transport, keep_alive)
        except OSError:
            self.abort()  # the client left mid-body, or the disk failed: cut the connection
        finally:
            record.close()

    def _write(self, head: str, content: bytes | memoryview, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        head_bytes = (head + "\r\n").encode("utf-8", "surrogateescape")
        if len(content) >= LARGE_BODY_BYTES:
            transport.writelines((head_bytes, content))
        else:
            transport.write(head_bytes + content if content else head_bytes)
        self._response_written(transport, keep_alive)

    def _response_written(self, transport: asyncio.Transport, keep_alive: bool) -> None:
        if not keep_alive:
            transport.close()
        elif self._write_paused and not self._busy:
            # The client reads slower than it asks: the next request waits for the drain.
            self._busy = True
            self._task = asyncio.get_running_loop().create_task(self._wait_for_drain())

    async def _wait_for_drain(self) -> None:
        try:
            await self._drain()
        except (asyncio.CancelledError, ConnectionError):
            return
        finally:
            self._task = None
            self._busy = False
        if self._transport is not None and not self._transport.is_closing():
            self._serve_buffered()

    async def _drain(self) -> None:
        if not self._write_paused:
            return
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        await self._drained

    async def _write_stream(
        self, answer: Answer, body: FetchBody, keep_alive: bool, head_only: bool
    ) -> None:
        """Send a body as it arrives from upstream; cut the connection if the fetch fails."""
        delivery = answer.delivery
        sends_body = _sends_body(answer, head_only)
        length_known = "content-length" in delivery.headers
        # Without a length the body is framed by chunked coding (a client can tell a cut body
        # from a whole one), or by closing the connection for an HTTP/1.0 client.
        chunked = sends_body and not length_known and self._http11
        keep_alive = keep_alive and (length_known or chunked or not sends_body)
        transport = self._transport
        if transport is None:
            return
        head = self._head(delivery.status, delivery.headers, keep_alive, chunked) + "\r\n"
        transport.write(head.encode("utf-8", "surrogateescape"))
        if sends_body:
            offset, end = (0, None) if delivery.byte_range is None else delivery.byte_range
            end = None if end is None else end + 1
            try:
                while (chunk := await body.read_from(offset, end)) is not None:
                    if self._transport is None:
                        return
                    if chunked:
                        self._transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                    else:
                        self._transport.write(chunk)
                    offset += len(chunk)
                    if self._runner is not None:
                        self._runner.bytes_served += len(chunk)
                    if self._write_paused:
                        await self._drain()
            except FetchAborted:
                if self._transport is not None:
                    self._transport.abort()  # the client sees fewer bytes than announced
                return
            if chunked and self._transport is not None:
                self._transport.write(b"0\r\n\r\n")
        if self._transport is None:
            return
        if not keep_alive:
            self._transport.close()
        elif self._write_paused:
            await self._drain()

    # ---- hand-off and timers -------------------------------------------------------------------

    def _hand_off(self) -> None:
        """Give the connection, and the bytes not yet consumed, to aiohttp for good."""
        transport = self._transport
        assert transport is not None
        self._disarm()
        server = self._factory.server
        assert server is not None
        handler = server()
        self._handler = handler
        handler.connection_made(transport)
        if self._write_paused:
            handler.pause_writing()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        data = bytes(self._buffer)
        self._buffer.clear()
        self._awaiting_head = True
        self._arm_head_deadline()
        handler.data_received(data)

    # Deadlines are times, not timers: setting one is two assignments on the hit path, and the
    # listener's sweep (every `DEADLINE_SWEEP_SECONDS`) acts on those that passed.

    def _arm_head_deadline(self) -> None:
        self.deadline = self._loop.time() + self._limits.client_timeout
        self._on_deadline = self._head_timed_out
        self._timing_head = True
        self._factory.watch_deadlines()

    def _arm_idle_deadline(self) -> None:
        self.deadline = self._loop.time() + self._limits.keepalive_timeout
        self._on_deadline = self._idle_timed_out
        self._timing_head = False
        self._factory.watch_deadlines()

    def _disarm(self) -> None:
        self._timing_head = False
        self.deadline = math.inf

    def deadline_passed(self) -> None:
        self.deadline = math.inf
        self._on_deadline()

    def _head_timed_out(self) -> None:
        self._timing_head = False
        if self._transport is None:
            return
        if self._handler is not None:
            if self._awaiting_head:
                self._limits.slow_clients_closed += 1
                self._handler.force_close()
            return
        if not self._busy:
            self._limits.slow_clients_closed += 1
            self._transport.close()

    def _idle_timed_out(self) -> None:
        if self._transport is not None and self._handler is None and not self._busy:
            self._transport.close()


def _send_file(socket_fd: int, file_fd: int, offset: int, length: int) -> int:
    """Bytes of `file_fd` from `offset` the non-blocking socket took, up to `length`."""
    sent = 0
    with contextlib.suppress(BlockingIOError):
        while sent < length:
            done = os.sendfile(socket_fd, file_fd, offset + sent, length - sent)
            if done == 0:
                break  # the file is shorter than its record said: the transport's read tells
            sent += done
    return sent


def _sends_body(answer: Answer, head_only: bool) -> bool:
    # A response to HEAD never has content, whatever the node's answer carries (a synthetic
    # answer has its message); nor does a 204 or a 304 (RFC 9110 sections 9.3.2, 15.3.5, 15.4.5).
    return (
        answer.delivery.with_body
        and not head_only
        and answer.delivery.status not in _NO_BODY_STATUSES
    )


def _may_be_request(partial: bytearray) -> bool:
    """Whether `partial`, a head still without its end, may be the start of one parsed here."""
    end_of_line = partial.find(b"\r\n")
    if end_of_line < 0:
        return _PARTIAL_REQUEST_LINE.fullmatch(partial) is not None
    return _WHOLE_REQUEST_LINE.fullmatch(partial, 0, end_of_line) is not None


_FIELD_LINES: dict[tuple[str, str], str] = {}
"""Rendered field lines by (name, value): hits on one object repeat all of theirs but Age and
Cache-Status, and those repeat for a second."""
MAX_FIELD_LINES = 8192
_TITLED: dict[str, str] = {}
MAX_TITLED_NAMES = 1024
"""Field names whose title case is remembered (names come from upstreams: keep it bounded)."""


def titled(name: str) -> str:
    """`name.title()`, remembered: the same few names go out on every response."""
    known = _TITLED.get(name)
    if known is None:
        known = name.title()
        if len(_TITLED) < MAX_TITLED_NAMES:
            _TITLED[name] = known
    return known
