"""Client limits of a cache node: connections, request rate, head sizes, slow clients.

Wired in two places: `install_limits` (called by `make_cache_app`) adds the rate-limit
middleware and the metrics; `server_options` and `listen` (called by `deploy.serve`) configure
aiohttp's request handler and serve every connection with the app's `Listener` (for a cache
node, `edge.http1`, which applies the same limits to the requests it answers itself).

- **Request rate** (`rate_limit`, `rate_burst`): a token bucket per client address
  (`core.limits.RateLimiter`); past it, 429 with `Retry-After` (whole seconds, at least 1) and
  the connection stays open. `/healthz` and `/readyz` are exempt: a load balancer probing from
  an address its clients share (a NAT, a proxy) must see the node's health, not that address's
  quota. Everything else counts, admin routes included (their bearer tokens are not worth
  brute-forcing at line rate) and `/metrics`. `rate_limit = 0` turns the limiter off. At most
  `RATE_LIMIT_CLIENTS` addresses are tracked (idle ones are forgotten once their bucket is
  full; see `core.limits`).
- **Connections** (`max_connections`): counted at the protocol level. A connection past the
  cap is aborted at once (TCP RST), before anything is read: no parser, no task, no response,
  no TIME_WAIT on the node; the cheapest refusal when overloaded, and a client or load balancer
  retries elsewhere. (A 503 would need the request read first, or a lingering close so the
  reset does not destroy the answer: resources the cap is there to save.) The listen backlog is
  not a cap: the kernel accepts up to it whatever we do.
- **Head sizes** (`max_header_bytes`): the longest request line or field line; aiohttp's
  `max_line_size` and `max_field_size` answer a longer one with 400 Bad Request and close the
  connection (the lean protocol hands such a head to aiohttp). At most 128 fields. Request
  bodies: `client_max_size` of the application (413 past it).
- **Slow clients** (`client_timeout`): a request head must arrive within this many seconds of
  its first byte (or of the connection's opening): a client that dribbles one (slowloris) is
  disconnected. For connections aiohttp serves, the middleware tells the protocol when a
  complete head has been parsed (`LimitedConnection.head_received`).
- **Idle keep-alive** (`keepalive_timeout`): a connection idle for that long after a response
  is closed (0: no keep-alive).
"""

import abc
import asyncio
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.config import CacheNodeConfig
from core.limits import RateLimiter

RATE_LIMIT_CLIENTS = 65_536
"""Client addresses whose buckets are held at most (a few MB)."""
RATE_LIMIT_EXEMPT = frozenset({"/healthz", "/readyz"})
LISTEN_BACKLOG = 1024


class ClientLimits:
    """One node's client limits and their counters."""

    def __init__(
        self, config: CacheNodeConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_connections = config.max_connections
        self.client_timeout = config.client_timeout
        self.keepalive_timeout = config.keepalive_timeout
        self.max_header_bytes = config.max_header_bytes
        self.limiter = (
            RateLimiter(config.rate_limit, config.rate_burst, RATE_LIMIT_CLIENTS)
            if config.rate_limit > 0
            else None
        )
        self.clock = clock
        self.open_connections = 0
        self.refused_connections = 0
        self.slow_clients_closed = 0
        self.rate_limited = 0


LIMITS = web.AppKey("limits", ClientLimits)


def install_limits(
    app: web.Application, config: CacheNodeConfig, registry: CollectorRegistry | None = None
) -> ClientLimits:
    """Give `app` the limits of `config`: rate-limit middleware, metrics, and the settings
    `server_options` and `listen` apply when the app is served."""
    limits = ClientLimits(config)
    app[LIMITS] = limits
    app.middlewares.append(_middleware(limits))
    if registry is not None:
        registry.register(_LimitsCollector(limits))
    return limits


def server_options(app: web.Application) -> dict[str, Any]:
    """Arguments for `web.AppRunner(app, ...)`: aiohttp's per-connection limits."""
    limits = app.get(LIMITS)
    if limits is None:
        return {}
    # The runner hands these to each `RequestHandler`. Beware: aiohttp answers a keyword it
    # does not know by dropping every custom one, with only a log warning.
    return {
        "keepalive_timeout": limits.keepalive_timeout,
        "max_line_size": limits.max_header_bytes,
        "max_field_size": limits.max_header_bytes,
    }


class LimitedConnection(asyncio.Protocol):
    """The protocol of a connection under the limits: the middleware tells it when aiohttp has
    read a complete request head (its `client_timeout` deadline ends) and when the handler is
    done (the next bytes start the next head)."""

    def head_received(self) -> None:
        raise NotImplementedError

    def request_done(self) -> None:
        raise NotImplementedError


class Listener(abc.ABC):
    """How an application's connections are made and, at shutdown, drained (an app without
    one is served by aiohttp's own protocol)."""

    @abc.abstractmethod
    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.BaseProtocol]:
        """The factory of each accepted connection's protocol; `server` is aiohttp's."""

    @abc.abstractmethod
    async def drain(self, grace: float) -> None:
        """Let the open connections finish their responses, closing them, for up to `grace`
        seconds; then abort what is left."""


LISTENER = web.AppKey("listener", Listener)


async def listen(
    runner: web.AppRunner,
    host: str,
    port: int,
    *,
    backlog: int = LISTEN_BACKLOG,
    reuse_port: bool = False,
) -> asyncio.Server:
    """Listen on `host`:`port` for the runner's (set up) server, with the app's `Listener` when
    it has one. Close the returned server, then `drain`, before `runner.cleanup()`."""
    server = runner.server
    if server is None:
        raise RuntimeError("set the runner up before listening")
    listener = runner.app.get(LISTENER)
    factory = server if listener is None else listener.protocol_factory(server)
    return await asyncio.get_running_loop().create_server(
        factory, host, port, backlog=backlog, reuse_address=True, reuse_port=reuse_port or None
    )


async def drain(app: web.Application, grace: float) -> None:
    """Drain the connections of `app`'s listener, if it has its own (see `Listener.drain`)."""
    listener = app.get(LISTENER)
    if listener is not None:
        await listener.drain(grace)


def _limited_connection(request: web.Request) -> LimitedConnection | None:
    transport = request.transport
    protocol = None if transport is None else transport.get_protocol()
    return protocol if isinstance(protocol, LimitedConnection) else None


def _middleware(limits: ClientLimits) -> Any:
    limiter = limits.limiter

    @web.middleware
    async def limits_middleware(
        request: web.Request,
        handler: Callable[[web.Request], Any],
    ) -> web.StreamResponse:
        connection = _limited_connection(request)
        if connection is not None:
            connection.head_received()
        try:
            if limiter is not None and request.path not in RATE_LIMIT_EXEMPT:
                client = request.remote or ""
                now = limits.clock()
                if not limiter.allow(client, now):
                    limits.rate_limited += 1
                    wait = max(1, math.ceil(limiter.retry_after(client, now)))
                    return web.Response(
                        status=429,
                        text="too many requests\n",
                        headers={"Retry-After": str(wait), "Cache-Control": "no-store"},
                    )
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            if connection is not None:
                connection.request_done()

    return limits_middleware


class _LimitsCollector(Collector):
    def __init__(self, limits: ClientLimits) -> None:
        self._limits = limits

    def collect(self) -> Iterator[Metric]:
        limits = self._limits
        yield GaugeMetricFamily(
            "shoal_client_connections", "Client connections open", value=limits.open_connections
        )
        for name, help_text, value in (
            ("shoal_connections_refused", "Connections refused past max_connections",
             limits.refused_connections),
            ("shoal_slow_clients_closed", "Connections closed for a request head too slow",
             limits.slow_clients_closed),
            ("shoal_rate_limited", "Requests answered 429 by the rate limit", limits.rate_limited),
        ):  # fmt: skip
            yield CounterMetricFamily(name, help_text, value=value)
