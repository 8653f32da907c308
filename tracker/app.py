"""The tracker's aiohttp app: WebSocket announces on `/` and `/announce`, plus `/stats.json`,
`/metrics` (Prometheus) and `/healthz`.

The shell only turns I/O into `SwarmBook` events and executes the commands it gets back:
each WebSocket text frame is decoded (JSON, at most `max_message_bytes` characters; frames
over four times that close the connection with 1009), checked against the allow-list when
configured, completed with the swarm's members on other processes when clustered, and handed
to the book. `Send` commands become WebSocket frames written without awaiting (`_Outboxes`:
joined per connection once per event-loop turn; compression is not offered), so a client that
stops reading loses messages instead of stalling the peers that announce to it. A timer feeds
`Ticked` at the book's next deadline (at most `TICK_SECONDS` apart).
"""

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import random
import secrets
import struct
from collections.abc import AsyncIterator

import aiohttp
import orjson
import redis.exceptions
from aiohttp import WSCloseCode, WSMsgType, web

from core.config import TrackerConfig
from core.p2p.swarm import (
    TIMEOUT_INTERVALS,
    Announced,
    Answered,
    Command,
    ConnectionClosed,
    ConnectionOpened,
    ForgetPeer,
    Forward,
    Forwarded,
    Message,
    RecordPeer,
    Refused,
    Reject,
    RemotePeer,
    Scraped,
    Send,
    SwarmBook,
    Ticked,
    decode_message,
)
from tracker.allow import AllowList
from tracker.cluster import Cluster
from tracker.locate import Locator, client_ip, parse_networks
from tracker.metrics import metrics_registry, render

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
"""Longest wait between two looks at expiring peers."""
OUTBOX_BYTES = 256 * 1024
"""Bytes waiting in a client's send buffer past which messages to it are dropped (it is not
reading)."""
HARD_LIMIT_FACTOR = 4
"""Frames over this many times `max_message_bytes` are not even read (aiohttp closes, 1009)."""

# JSON is most of a tracker's work (an announce carries five SDPs of ~760 characters, each
# relayed again): orjson parses and writes it several times faster than the stdlib. Its output is
# compact UTF-8, as bittorrent-tracker's `JSON.stringify` (latin-1 `offer_id`s stay themselves).


def text_frame(payload: bytes) -> bytes:
    """UTF-8 `payload` as one unmasked, uncompressed WebSocket text frame (RFC 6455 section
    5.2): what a server sends when no extension was negotiated."""
    size = len(payload)
    if size < 126:
        return _PACK_SHORT(0x81, size) + payload
    if size < 65536:
        return _PACK_MEDIUM(0x81, 126, size) + payload
    return _PACK_LONG(0x81, 127, size) + payload


_PACK_SHORT = struct.Struct("!BB").pack
_PACK_MEDIUM = struct.Struct("!BBH").pack
_PACK_LONG = struct.Struct("!BBQ").pack


class _Outboxes:
    """Frames for the open connections, written straight to their transports.

    aiohttp's `send_str` is a coroutine: awaiting one per relayed message (a task per connection
    draining a queue) cost more than the book's decisions. Frames are written here without
    awaiting: those produced during one turn of the event loop are joined per connection and
    written at the end of the turn (one `write` per connection, not one per message). A client
    whose send buffer holds over `OUTBOX_BYTES` is not reading: what it is sent is dropped
    (counted) instead of growing the buffer or stalling anyone. Nothing is written once aiohttp
    began closing the socket (no data frame may follow a close frame), so aiohttp's own frames
    (pong, close) and these never interleave: both are written whole, on one thread.
    """

    def __init__(self) -> None:
        self.open: dict[int, tuple[web.WebSocketResponse, asyncio.Transport]] = {}
        self.dropped = 0
        self._pending: dict[int, list[bytes]] = {}

    def add(self, conn: int, ws: web.WebSocketResponse, transport: asyncio.Transport) -> None:
        self.open[conn] = (ws, transport)

    def remove(self, conn: int) -> None:
        del self.open[conn]
        self._pending.pop(conn, None)

    def put(self, conn: int, message: Message) -> None:
        if conn not in self.open:
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.setdefault(conn, []).append(text_frame(orjson.dumps(message)))

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for conn, frames in pending.items():
            ws, transport = self.open[conn]
            if ws.closed or transport.is_closing():
                continue
            if transport.get_write_buffer_size() > OUTBOX_BYTES:
                self.dropped += len(frames)
            else:
                transport.write(b"".join(frames) if len(frames) > 1 else frames[0])


class Tracker:
    """The book, the open connections and the optional allow-list, geo DB and cluster."""

    def __init__(self, config: TrackerConfig, *, process: str, rng: random.Random) -> None:
        self.config = config
        self.book = SwarmBook(config, rng)
        self.locator = Locator(config.geoip_db, pop_from_query=config.pop_from_query)
        self.outboxes = _Outboxes()
        self.registry = metrics_registry(self.book, lambda: len(self.outboxes.open))
        self.allow: AllowList | None = None
        self.cluster = (
            Cluster(
                config.redis_url,
                config.redis_prefix,
                process,
                TIMEOUT_INTERVALS * config.announce_interval,
            )
            if config.redis_url
            else None
        )
        self._trusted = parse_networks(config.trusted_proxies)
        self._ids = itertools.count(1)

    # Executing commands ----------------------------------------------------------------

    async def execute(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, Send):
                self.outboxes.put(command.conn, command.message)
            elif self.cluster is not None:
                await self._cluster_op(self.cluster, command)

    async def _cluster_op(
        self, cluster: Cluster, command: Forward | RecordPeer | ForgetPeer
    ) -> None:
        try:
            match command:
                case Forward():
                    await cluster.forward(command)
                case RecordPeer():
                    await cluster.record(command)
                case ForgetPeer():
                    await cluster.forget(command)
        except (redis.exceptions.RedisError, OSError) as error:
            # Peers on this process keep working; the others just miss this update.
            log.warning("tracker: redis %s failed: %r", type(command).__name__, error)

    async def deliver_forwarded(self, event: Forwarded) -> None:
        await self.execute(self.book.handle(event))

    # Handlers ----------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.config.heartbeat,
            compress=False,
            max_msg_size=HARD_LIMIT_FACTOR * self.config.max_message_bytes,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(text="shoal tracker: connect with a WebSocket\n")
        if len(self.outboxes.open) >= self.config.max_connections:
            raise web.HTTPServiceUnavailable(text="too many connections\n")
        await ws.prepare(request)
        transport = request.transport
        if transport is None:  # the client left during the handshake
            return ws
        conn = next(self._ids)
        ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"), self._trusted)
        location = self.locator.locate(ip, request.query.get("pop"))
        self.outboxes.add(conn, ws, transport)
        self.book.handle(ConnectionOpened(conn, ip, location))
        try:
            async for frame in ws:
                if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self._on_frame(conn, frame.data)
        finally:
            self.outboxes.remove(conn)
            await self.execute(self.book.handle(ConnectionClosed(conn)))
        return ws

    async def _on_frame(self, conn: int, data: str | bytes) -> None:
        loop = asyncio.get_running_loop()
        if len(data) > self.config.max_message_bytes:
            event: Announced | Answered | Scraped | Refused = Refused(conn, Reject.TOO_LARGE)
        else:
            try:
                message = orjson.loads(data)
            except orjson.JSONDecodeError:  # also invalid UTF-8, and nesting over 1,024 deep
                message = None
            event = decode_message(conn, message, loop.time())
        if isinstance(event, Announced | Answered) and (self.allow or self.cluster):
            vetted = await self._vet(event)
            if conn not in self.outboxes.open:
                return  # closed while the origin or Redis was asked
            event = vetted
        await self.execute(self.book.handle(event))

    async def _vet(self, event: Announced | Answered) -> Announced | Answered | Refused:
        """Ask the origin's allow-list and Redis what they must say about an announce."""
        info_hash = event.info_hash
        if self.allow is not None and not await self.allow.allowed(info_hash):
            return Refused(event.conn, Reject.NOT_ALLOWED, info_hash, "announce")
        if isinstance(event, Announced) and self.cluster is not None:
            event = dataclasses.replace(event, remote=await self._remote(info_hash))
        # Awaited lookups took time: the book's expiry order wants the time of handling.
        return dataclasses.replace(event, now=asyncio.get_running_loop().time())

    async def _remote(self, info_hash: str) -> tuple[RemotePeer, ...]:
        assert self.cluster is not None
        try:
            return await self.cluster.remote_peers(info_hash)
        except (redis.exceptions.RedisError, OSError) as error:
            log.warning("tracker: redis lookup failed: %r", error)
            return ()

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.book.stats())

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=render(self.registry), content_type="text/plain", charset="utf-8")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    # Lifecycle ---------------------------------------------------------------------------

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deadline = self.book.next_deadline()
            wait = TICK_SECONDS if deadline is None else deadline - loop.time()
            await asyncio.sleep(min(max(wait, 0.0), TICK_SECONDS))
            await self.execute(self.book.handle(Ticked(loop.time())))

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        session = None
        if self.config.allow_list:
            session = aiohttp.ClientSession()
            self.allow = AllowList(
                session,
                self.config.origin_url,
                allow_ttl=self.config.allow_ttl,
                deny_ttl=self.config.deny_ttl,
                timeout=self.config.allow_timeout,
            )
        if self.cluster is not None:
            await self.cluster.start(self.deliver_forwarded)
        ticker = asyncio.create_task(self._tick())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            # Connections still open leave their swarms (and Redis) before Redis closes.
            for conn in list(self.outboxes.open):
                self.outboxes.remove(conn)
                await self.execute(self.book.handle(ConnectionClosed(conn)))
            if self.cluster is not None:
                await self.cluster.close()
            if session is not None:
                await session.close()
            self.locator.close()

    async def close_connections(self, app: web.Application) -> None:
        for ws, _ in list(self.outboxes.open.values()):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"tracker stopping")


TRACKER = web.AppKey("tracker", Tracker)


def make_tracker_app(
    config: TrackerConfig,
    *,
    process: str | None = None,
    rng: random.Random | None = None,
) -> web.Application:
    """The tracker app. `process` names it among clustered processes (default: random);
    `rng` breaks ties between equally close peers (default: seeded from the OS)."""
    tracker = Tracker(config, process=process or secrets.token_hex(8), rng=rng or random.Random())
    app = web.Application()
    app[TRACKER] = tracker
    for path in ("/", "/announce"):
        app.router.add_get(path, tracker.websocket)
    app.router.add_get("/stats.json", tracker.stats)
    app.router.add_get("/metrics", tracker.metrics)
    app.router.add_get("/healthz", tracker.healthz)
    app.cleanup_ctx.append(tracker.context)
    app.on_shutdown.append(tracker.close_connections)
    return app
