"""Real servers on 127.0.0.1 for the cache-node tests: nodes, origin stubs, raw TCP upstreams.

Everything listens on a port the kernel picked (or, to restart a server where it was, the port it
had) and is served by aiohttp's own `AppRunner`, as `deploy.serve` does, so handler cancellation
and shutdown behave as in production. The listening sockets have a deep backlog so that hundreds
of concurrent clients connect at once instead of waiting for SYN retries.

An origin stub (`Upstream`) is a small real aiohttp app: each test routes the paths it needs to
handlers that return exactly the header fields the test is about, and the stub records every
request it receives (method, target, fields, body).
"""

import asyncio
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from core.cache.routing import ParentRouter
from core.config import CacheNodeConfig
from core.http.conditional import http_date
from edge.app import RUNNER, make_cache_app
from edge.http1 import EdgeListener
from edge.limits import LIMITS, LISTENER, ClientLimits, drain, listen, server_options
from edge.runner import CommandRunner

T0 = 1_700_000_000.0
"""Where test clocks start (any epoch works: stubs date their responses from the same clock)."""
BACKLOG = 2048

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeClock:
    """A clock the test moves by hand; nodes and stubs read it (no sleeping for freshness)."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def date(self) -> str:
        """The current time as an HTTP-date, for Date, Last-Modified and Expires fields."""
        return http_date(self.now)


def listening_socket(port: int = 0) -> socket.socket:
    """A TCP socket on 127.0.0.1 (`port` 0: a free one), bound and ready for `listen`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def closed_port_url() -> str:
    """A URL where nothing listens while the test runs (connections are refused)."""
    with listening_socket() as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Served:
    """An aiohttp application listening on 127.0.0.1; `stop` and `start` keep its port."""

    def __init__(self, app_factory: Callable[[], web.Application], port: int = 0) -> None:
        self._factory = app_factory
        self.port = port
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "Served":
        self.app = self._factory()
        self._runner = web.AppRunner(
            self.app, access_log=None, shutdown_timeout=1.0, **server_options(self.app)
        )
        await self._runner.setup()
        self._listener = await listen(self._runner, "127.0.0.1", self.port, backlog=BACKLOG)
        self.port = self._listener.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            assert self.app is not None
            await drain(self.app, 1.0)
            await self._runner.cleanup()
            self._runner = None
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None


@dataclass(frozen=True)
class Seen:
    """One request an origin stub received."""

    method: str
    target: str
    headers: Mapping[str, str]
    """Lowercase names; lines of one name joined with ", "."""
    body: bytes


@dataclass
class Upstream:
    """An origin stub: routes by exact path (query ignored), records every request."""

    clock: FakeClock | None = None
    routes: dict[str, Handler] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    served: Served | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(self, port: int = 0) -> "Upstream":
        self.served = await Served(self.app, port).start()
        return self

    async def stop(self) -> None:
        if self.served is not None:
            await self.served.stop()

    @property
    def url(self) -> str:
        assert self.served is not None
        return self.served.url

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def static(
        self,
        path: str,
        body: bytes = b"",
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Serve `body` at `path` with exactly these fields, plus a Date from the stub's clock
        unless `headers` has one; `delay` seconds before the response starts."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if delay:
                await asyncio.sleep(delay)
            return web.Response(status=status, body=body, headers=self.fields(headers))

        self.route(path, handler)

    def fields(self, headers: Mapping[str, str] | None = None) -> dict[str, str]:
        fields = dict(headers or {})
        if self.clock is not None and not any(name.lower() == "date" for name in fields):
            fields["Date"] = self.clock.date
        return fields

    def requests(self, path: str | None = None) -> list[Seen]:
        """The requests received for `path` (all of them when None), healthz probes excluded."""
        return [
            seen
            for seen in self.seen
            if seen.target.split("?", 1)[0] != "/healthz"
            and (path is None or seen.target.split("?", 1)[0] == path)
        ]

    def count(self, path: str | None = None) -> int:
        return len(self.requests(path))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self.seen.append(Seen(request.method, request.raw_path, headers, body))
        if request.path == "/healthz":
            return web.json_response({"status": "ok"})
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="no such stub route\n")
        return await handler(request)


def node_config(upstreams: list[str], **settings: object) -> CacheNodeConfig:
    """A cache node's configuration for tests: short timeouts, every object admitted, tokens."""
    values: dict[str, object] = {
        "upstreams": upstreams,
        "connect_timeout": 1.0,
        "upstream_timeout": 5.0,
        "admission": "always",
        "purge_token": "purge-secret",
        "hint_token": "hint-secret",
    }
    values.update(settings)
    return CacheNodeConfig(**values)  # type: ignore[arg-type]


class Node:
    """A cache node (edge or regional) served on 127.0.0.1."""

    def __init__(
        self,
        config: CacheNodeConfig,
        *,
        tier: str = "edge",
        name: str = "edge-t",
        clock: Callable[[], float] | None = None,
        router: Callable[[], ParentRouter] | None = None,
        port: int = 0,
    ) -> None:
        self.config = config
        self.name = name

        def factory() -> web.Application:
            return make_cache_app(
                config,
                tier=tier,
                name=name,
                clock=clock or time.time,
                router=None if router is None else router(),
            )

        self.served = Served(factory, port)

    async def start(self) -> "Node":
        await self.served.start()
        return self

    async def stop(self) -> None:
        await self.served.stop()

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def runner(self) -> CommandRunner:
        assert self.served.app is not None
        return self.served.app[RUNNER]

    @property
    def limits(self) -> ClientLimits:
        assert self.served.app is not None
        return self.served.app[LIMITS]

    @property
    def listener(self) -> EdgeListener:
        assert self.served.app is not None
        listener = self.served.app[LISTENER]
        assert isinstance(listener, EdgeListener)
        return listener


def client_session(**kwargs: object) -> aiohttp.ClientSession:
    """A client that sends only the fields a test gives (no Accept-Encoding, no User-Agent),
    never decompresses, and opens as many connections as the test needs."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=False),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
        **kwargs,  # type: ignore[arg-type]
    )


_METRIC_LINE = re.compile(r"^([a-z_]+)(?:\{([^}]*)\})? ([0-9.e+-]+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as `name` or `name{labels}` -> value."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line)
        if match is not None:
            name, labels, value = match.groups()
            values[f"{name}{{{labels}}}" if labels else name] = float(value)
    return values


def cache_status_members(value: str) -> list[list[str]]:
    """A Cache-Status field split into members, each a list of its node and parameters."""
    return [[part.strip() for part in member.split(";")] for member in value.split(",")]


async def raw_exchange(url: str, request: bytes, *, timeout: float = 5.0) -> bytes:
    """Send `request` bytes to the server at `url` and read until it closes (or `timeout`)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(timeout):
                while chunk := await reader.read(65536):
                    chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)
    finally:
        writer.close()


def status_of(raw: bytes) -> int:
    """The status code of the first response in raw HTTP/1.1 bytes."""
    return int(raw.split(b" ", 2)[1])


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until `predicate()` holds (background work such as a revalidation)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def iter_chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


RawBehaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawUpstream:
    """An upstream written with raw asyncio streams, for answers no HTTP library would send.

    `behaviour` handles each connection after its request head was read (it is in `heads`);
    the connection is closed after it returns, unless it already was.
    """

    def __init__(self, behaviour: RawBehaviour) -> None:
        self.behaviour = behaviour
        self.heads: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, path: str) -> int:
        """How many requests for `path` arrived (health probes are other paths)."""
        return sum(
            1 for head in self.heads if head.split(b" ", 2)[1].split(b"?")[0] == path.encode()
        )

    async def start(self) -> "RawUpstream":
        sock = listening_socket()
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._handle, sock=sock, backlog=BACKLOG)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.heads.append(head)
                if head.startswith(b"GET /healthz "):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                await self.behaviour(reader, writer)
                return
        except asyncio.CancelledError:
            return  # stopped: end quietly (a cancelled connection task is logged as an error)
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            if not writer.is_closing():
                writer.close()


def response_head(status: str = "200 OK", **fields: str) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [
        f"{name.replace('_', '-')}: {v}" for name, v in fields.items()
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
