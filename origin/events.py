"""Viewer events at the origin: the batch API, the durable log, likes and follows, the viral loop.

`POST /api/events` takes a JSON array of events (at most `events.max_batch`, body at most
`events.max_body_bytes`):

    {"type": "play_start", "user": "u1", "video": "v1", "ts": 1700000000.5,
     "region": "eu", "device": "phone"}

`type` is one of `TYPES`; every event has `user` and `ts` (the client's clock, epoch seconds,
kept as sent); `follow` names a `creator`, every other type a `video`; `watch_time` carries
`seconds`; `region` and `device` are optional. Ids are 1 to 64 characters of A-Z a-z 0-9 _ -.
Any unknown field or bad value refuses the whole batch with 400 naming the event and the field,
and nothing of it is applied or logged.

Why acknowledgement is fast and still durable enough: a valid batch is put in a bounded memory
buffer and answered 202 at once; a background task appends what the buffer holds to the log
(the local JSON-lines file, flushed and fsynced per append, or Redis Streams partitioned by
user: `XADD <prefix><crc32(user) % partitions>`, so one user's events stay in order in one
stream). A crash loses at most what was acknowledged since the last append (milliseconds).
A log that fails keeps its events in the buffer and is retried with back-off; when the buffer
is full, batches get 503 with Retry-After rather than growing memory without bound.

Likes and follows are strongly consistent for the acting user: they are written to the
catalog's SQLite file (tables `likes`, `follows`) before the 202, so the user's next read sees
them. Aggregate counters (the detector's) may lag.

Authentication: viewers have no accounts yet, so the endpoint is open. A request that carries
`Authorization: Bearer <token>` is checked against the uploads' tokens (`uploads.tokens`): an
unknown token is 401, and every event must then be the token's user's (403 otherwise).

The viral loop: each accepted event feeds `core.viral.TrendingDetector` with the server's
clock (client clocks are not trusted for rates). A video that enters a trending set is hinted
to `events.hint_nodes` (`POST /_shoal/trending` with `events.hint_token`), by package id, each
node retried with doubling back-off; the nodes pre-warm its first segments. `GET
/api/trending?region=&limit=` lists the current trending videos (global without a region).
"""

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from core.config import EventsConfig
from core.viral import DetectorSettings, TrendingDetector

log = logging.getLogger(__name__)

TYPES = frozenset(
    {
        "impression",
        "play_start",
        "watch_time",
        "completion",
        "skip",
        "like",
        "share",
        "comment",
        "follow",
    }
)
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_OPTIONAL = frozenset({"region", "device"})
MAX_WATCH_SECONDS = 86_400.0
MAX_TRENDING = 100
FORGET_EVERY = 60.0
LOG_RETRY_MAX = 5.0

Event = dict[str, Any]
Authenticate = Callable[[str], str | None]
PackageOf = Callable[[str], str]


class BadBatch(ValueError):
    """The batch is refused whole; the message names the event and the field."""


def parse_batch(body: bytes, max_batch: int) -> list[Event]:
    """The batch's events, validated strictly (see the module's docstring)."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadBatch(f"the body is not JSON: {exc}") from exc
    if not isinstance(document, list) or not document:
        raise BadBatch("expected a non-empty JSON array of events")
    if len(document) > max_batch:
        raise BadBatch(f"{len(document)} events, more than {max_batch} in one batch")
    return [_check_event(index, event) for index, event in enumerate(document)]


def _check_event(index: int, event: object) -> Event:
    def fail(problem: str) -> BadBatch:
        return BadBatch(f"event {index}: {problem}")

    if not isinstance(event, dict):
        raise fail("expected an object")
    kind = event.get("type")
    if kind not in TYPES:
        raise fail(f"type must be one of {', '.join(sorted(TYPES))}, not {kind!r}")
    target = "creator" if kind == "follow" else "video"
    required = {"type", "user", "ts", target} | ({"seconds"} if kind == "watch_time" else set())
    missing = required - event.keys()
    if missing:
        raise fail(f"missing {', '.join(sorted(missing))}")
    unknown = event.keys() - required - _OPTIONAL
    if unknown:
        raise fail(f"unknown field {', '.join(sorted(unknown))} for {kind}")
    for name in ("user", target, *(_OPTIONAL & event.keys())):
        value = event[name]
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise fail(f"{name} must be 1 to 64 characters of A-Z a-z 0-9 _ -, not {value!r}")
    if not _is_number(event["ts"]) or event["ts"] <= 0:
        raise fail(f"ts must be a positive number of epoch seconds, not {event['ts']!r}")
    if "seconds" in event and not (
        _is_number(event["seconds"]) and 0 <= event["seconds"] <= MAX_WATCH_SECONDS
    ):
        raise fail(f"seconds must be a number from 0 to {MAX_WATCH_SECONDS:g}")
    return dict(event)


def _is_number(value: object) -> bool:
    # bool is an int subclass; `true` as a timestamp is a client bug.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# ---- likes and follows -------------------------------------------------------------------------


class Social:
    """Likes and follows in the catalog's SQLite file, written before an event batch is acked.

    Its own connection (WAL: the catalog's readers are not blocked), its own tables created if
    missing, so that the catalog's migrations stay the catalog's."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=10.0
        )
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS likes (user TEXT NOT NULL, video TEXT NOT NULL, "
                "at REAL NOT NULL, PRIMARY KEY (user, video)) WITHOUT ROWID"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS follows (user TEXT NOT NULL, creator TEXT NOT NULL, "
                "at REAL NOT NULL, PRIMARY KEY (user, creator)) WITHOUT ROWID"
            )

    def apply(self, events: Sequence[Event], now: float) -> None:
        """Record the batch's likes and follows in one transaction (repeats change nothing)."""
        likes = [(e["user"], e["video"], now) for e in events if e["type"] == "like"]
        follows = [(e["user"], e["creator"], now) for e in events if e["type"] == "follow"]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO likes VALUES (?, ?, ?)", likes)
                self._db.executemany("INSERT OR IGNORE INTO follows VALUES (?, ?, ?)", follows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def likes_of(self, user: str) -> list[str]:
        return self._column("SELECT video FROM likes WHERE user = ? ORDER BY at, video", user)

    def follows_of(self, user: str) -> list[str]:
        return self._column("SELECT creator FROM follows WHERE user = ? ORDER BY at, creator", user)

    def _column(self, sql: str, user: str) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute(sql, (user,))]

    def close(self) -> None:
        with self._lock:
            self._db.close()


# ---- the durable log ---------------------------------------------------------------------------


class EventLog(Protocol):
    async def append(self, events: Sequence[Event]) -> None:
        """Make `events` durable, or raise (they are retried)."""

    async def close(self) -> None: ...


class FileEventLog:
    """An append-only JSON-lines file, flushed and fsynced after each append."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[bytes] = path.open("ab")

    async def append(self, events: Sequence[Event]) -> None:
        data = b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in events)
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    async def close(self) -> None:
        self._file.close()


class RedisEventLog:
    """Redis Streams `<prefix><partition>`, partitioned by user so each user's events stay in
    order in one stream (consumers can keep per-user state without cross-stream merging)."""

    def __init__(self, url: str, prefix: str, partitions: int, max_len: int) -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url)
        self.prefix = prefix
        self.partitions = partitions
        self.max_len = max_len

    def stream_of(self, user: str) -> str:
        # crc32, not hash(): a user's partition must be the same in every process.
        return f"{self.prefix}{zlib.crc32(user.encode()) % self.partitions}"

    async def append(self, events: Sequence[Event]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(
                    self.stream_of(event["user"]),
                    {"event": json.dumps(event, separators=(",", ":"))},
                    maxlen=self.max_len or None,
                    approximate=True,
                )
            await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()


class EventBuffer:
    """Acknowledged events waiting for the log; bounded, drained by `run` in the background."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._events: deque[Event] = deque()
        self._ready = asyncio.Event()
        self.logged = 0
        self.log_failures = 0

    def __len__(self) -> int:
        return len(self._events)

    def offer(self, events: Sequence[Event]) -> bool:
        """Take the whole batch, or none of it when it does not fit."""
        if len(self._events) + len(events) > self.capacity:
            return False
        self._events.extend(events)
        self._ready.set()
        return True

    async def run(self, event_log: EventLog, stop: asyncio.Event) -> None:
        """Append what is buffered until `stop`, then what is left; a failing log is retried
        with doubling back-off and its events stay first in line."""
        delay = 0.01
        while self._events or not stop.is_set():
            if not self._events:
                self._ready.clear()
                waiters = [asyncio.ensure_future(e.wait()) for e in (self._ready, stop)]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
                continue
            batch = list(self._events)
            try:
                await event_log.append(batch)
            except Exception as exc:  # a log outage must not end the loop: events wait
                self.log_failures += 1
                log.warning("event log append failed (%d events wait): %s", len(batch), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LOG_RETRY_MAX)
                continue
            delay = 0.01
            for _ in batch:
                self._events.popleft()
            self.logged += len(batch)


# ---- trending hints ----------------------------------------------------------------------------


class HintSender:
    """Tells the cache nodes about newly trending packages; each node retried on its own."""

    def __init__(self, config: EventsConfig) -> None:
        self.config = config
        self.sent = 0
        self.failed = 0
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, packages: Sequence[str]) -> None:
        for node in self.config.hint_nodes:
            task = asyncio.get_running_loop().create_task(self._deliver(node, list(packages)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, node: str, packages: list[str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0))
        headers = {"Authorization": f"Bearer {self.config.hint_token}"}
        delay = self.config.hint_backoff
        for attempt in range(1, self.config.hint_attempts + 1):
            try:
                async with self._session.post(
                    node.rstrip("/") + "/_shoal/trending",
                    json={"videos": packages},
                    headers=headers,
                ) as response:
                    if response.status == 200:
                        self.sent += 1
                        return
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = str(exc) or type(exc).__name__
            log.info("trending hint to %s failed (try %d): %s", node, attempt, problem)
            if attempt < self.config.hint_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        self.failed += 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


# ---- the service and its routes ----------------------------------------------------------------


class EventService:
    """Validation, likes and follows, the buffer, the detector and the hints, for one origin."""

    def __init__(
        self,
        config: EventsConfig,
        social: Social,
        event_log: EventLog,
        *,
        authenticate: Authenticate | None = None,
        package_of: PackageOf = str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.social = social
        self.log = event_log
        self.buffer = EventBuffer(config.buffer_events)
        self.detector = TrendingDetector(
            DetectorSettings(
                short_tau=config.short_window,
                long_tau=config.long_window,
                prior_rate=config.prior_rate,
                min_views=config.min_views,
                z_enter=config.z_enter,
                ratio=config.ratio,
            )
        )
        self.hints = HintSender(config)
        self.authenticate = authenticate
        self.package_of = package_of
        self.clock = clock

    async def accept(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > self.config.max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.config.max_body_bytes, actual_size=request.content_length or 0
            )
        body = await request.content.read(self.config.max_body_bytes + 1)
        if len(body) > self.config.max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self.config.max_body_bytes, actual_size=len(body)
            )
        try:
            events = parse_batch(body, self.config.max_batch)
        except BadBatch as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from exc
        self._check_caller(request, events)
        if len(self.buffer) + len(events) > self.buffer.capacity:
            raise web.HTTPServiceUnavailable(
                text="the event buffer is full; retry\n", headers={"Retry-After": "1"}
            )
        now = self.clock()
        if any(e["type"] in ("like", "follow") for e in events):
            try:
                await asyncio.to_thread(self.social.apply, events, now)
            except sqlite3.Error as exc:
                log.warning("likes and follows not recorded: %s", exc)
                raise web.HTTPServiceUnavailable(
                    text="likes and follows cannot be recorded; retry\n",
                    headers={"Retry-After": "1"},
                ) from exc
        # Checked above and nothing awaited since but the catalog write: room is still there
        # unless other batches filled it meanwhile, in which case this one is refused whole.
        if not self.buffer.offer([{**e, "received": now} for e in events]):
            raise web.HTTPServiceUnavailable(
                text="the event buffer is full; retry\n", headers={"Retry-After": "1"}
            )
        self._detect(events, now)
        return web.json_response({"accepted": len(events)}, status=202)

    def _check_caller(self, request: web.Request, events: Sequence[Event]) -> None:
        header = request.headers.get("Authorization")
        if header is None or self.authenticate is None:
            return
        scheme, _, token = header.partition(" ")
        user = self.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise web.HTTPUnauthorized(
                text="unknown token\n", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        if any(e["user"] != user for e in events):
            raise web.HTTPForbidden(text=f"a token of {user} may only send {user}'s events\n")

    def _detect(self, events: Sequence[Event], now: float) -> None:
        trending: dict[str, None] = {}
        for event in events:
            if "video" not in event:
                continue
            for trend in self.detector.observe(
                event["video"],
                event["type"],
                now,
                viewer=event["user"],
                region=event.get("region", ""),
                amount=float(event.get("seconds", 1.0)),
            ):
                log.info("video %s trending (%r, z=%.1f)", trend.video, trend.scope, trend.score)
                trending[trend.video] = None
        if trending and self.config.hint_nodes:
            self.hints.send([self.package_of(video) for video in trending])

    async def trending(self, request: web.Request) -> web.Response:
        region = request.query.get("region", "")
        if region and not _ID.fullmatch(region):
            raise web.HTTPBadRequest(text="region must be 1 to 64 characters of A-Z a-z 0-9 _ -\n")
        try:
            limit = int(request.query.get("limit", str(MAX_TRENDING)))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="limit must be an integer\n") from exc
        if not 1 <= limit <= MAX_TRENDING:
            raise web.HTTPBadRequest(text=f"limit must be 1 to {MAX_TRENDING}\n")
        ranked = self.detector.trending(self.clock(), region, limit)
        return web.json_response(
            {
                "region": region,
                "videos": [{"video": video, "score": round(score, 2)} for video, score in ranked],
            },
            headers={"Cache-Control": "no-store"},
        )

    async def run(self) -> AsyncIterator[None]:
        """The background work while the caller's context lasts (a cleanup context's shape):
        the log appender and the detector's forgetting of idle videos."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        appender = loop.create_task(self.buffer.run(self.log, stop))
        forgetter = loop.create_task(self._forget_idle())
        try:
            yield
        finally:
            stop.set()
            forgetter.cancel()
            await self.hints.close()
            with contextlib.suppress(asyncio.CancelledError):
                await forgetter
            await appender
            await self.log.close()
            await asyncio.to_thread(self.social.close)

    async def _forget_idle(self) -> None:
        while True:
            await asyncio.sleep(FORGET_EVERY)
            self.detector.forget_idle(self.clock())


EVENTS = web.AppKey("events", EventService)


def open_event_log(config: EventsConfig, data_dir: Path) -> EventLog:
    if config.redis_url:
        return RedisEventLog(
            config.redis_url, config.redis_prefix, config.partitions, config.stream_max_len
        )
    path = Path(config.log_path) if config.log_path else data_dir / "events" / "events.jsonl"
    return FileEventLog(path)


def install_events(
    app: web.Application,
    config: EventsConfig,
    data_dir: Path,
    catalog_path: Path,
    *,
    authenticate: Authenticate | None = None,
    package_of: PackageOf = str,
    clock: Callable[[], float] = time.time,
) -> EventService:
    """Give the origin `app` the events API, its log and the viral loop."""
    service = EventService(
        config,
        Social(catalog_path),
        open_event_log(config, data_dir),
        authenticate=authenticate,
        package_of=package_of,
        clock=clock,
    )
    app[EVENTS] = service
    app.router.add_post("/api/events", service.accept)
    app.router.add_get("/api/trending", service.trending)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async for _ in service.run():
            yield

    app.cleanup_ctx.append(lifecycle)
    return service


__all__ = [
    "EVENTS",
    "TYPES",
    "BadBatch",
    "EventBuffer",
    "EventService",
    "FileEventLog",
    "RedisEventLog",
    "Social",
    "install_events",
    "parse_batch",
]
