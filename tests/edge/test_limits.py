"""edge.limits on real sockets: rate limit, connection cap, head sizes, slow clients, keep-alive,
slow upstreams.

Each node is served exactly as `deploy.serve` serves it (`server_options` for the runner,
`listen` for the guarded listener), on 127.0.0.1 with a free port; timeouts are short.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from core.config import CacheNodeConfig
from edge.app import RUNNER, make_cache_app
from edge.limits import LIMITS, ClientLimits, listen, server_options
from edge.runner import CommandRunner
from tests.edge.harness import (
    RawUpstream,
    Upstream,
    client_session,
    node_config,
    parse_metrics,
    response_head,
    wait_for,
)

SEGMENT = "/v/abc/360p/seg_00001.m4s"
BODY = bytes(range(256)) * 4


@dataclass
class Limited:
    url: str
    port: int
    app: web.Application

    @property
    def limits(self) -> ClientLimits:
        return self.app[LIMITS]

    @property
    def runner(self) -> CommandRunner:
        return self.app[RUNNER]


@asynccontextmanager
async def limited_node(config: CacheNodeConfig) -> AsyncIterator[Limited]:
    """A cache node served as `deploy.serve` does, with its limits."""
    app = make_cache_app(config, tier="edge", name="edge-l")
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, **server_options(app))
    await runner.setup()
    listener = await listen(runner, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield Limited(f"http://127.0.0.1:{port}", port, app)
    finally:
        listener.close()
        await runner.cleanup()
        await listener.wait_closed()


@pytest.fixture
async def origin() -> AsyncIterator[Upstream]:
    stub = await Upstream().start()
    stub.static(SEGMENT, BODY, headers={"Cache-Control": "max-age=3600"})
    yield stub
    await stub.stop()


def request_bytes(target: str = SEGMENT, *extra: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: edge", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length: its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True if the server closes (FIN or RST) within `timeout` seconds without sending more."""
    try:
        async with asyncio.timeout(timeout):
            return await reader.read(1) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def connect(
    node: Limited, local: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", node.port, local_addr=None if local is None else (local, 0)
    )


def session_from(address: str) -> aiohttp.ClientSession:
    """A client whose connections come from `address` (Linux routes all of 127/8 to lo)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, local_addr=(address, 0)),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
    )


# ---- request rate --------------------------------------------------------------------------------


async def test_rate_limit_answers_429_past_the_burst_for_one_client_only(
    origin: Upstream,
) -> None:
    config = node_config([origin.url], rate_limit=1.0, rate_burst=3)
    async with (
        limited_node(config) as node,
        session_from("127.0.0.1") as first,
        session_from("127.0.0.2") as second,
        session_from("127.0.0.3") as monitor,
    ):
        statuses = []
        for _ in range(4):
            async with first.get(node.url + SEGMENT) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert response.headers["Retry-After"] == "1"
                    assert response.headers["Cache-Control"] == "no-store"
                else:
                    assert await response.read() == BODY
        assert statuses == [200, 200, 200, 429]
        # Probes are exempt; everything else from that address is refused for now.
        async with first.get(node.url + "/healthz") as response:
            assert response.status == 200
        async with first.get(node.url + "/metrics") as response:
            assert response.status == 429
        # Another address has a bucket of its own.
        for _ in range(3):
            async with second.get(node.url + SEGMENT) as response:
                assert response.status == 200
                assert await response.read() == BODY
        # A token comes back after 1 / rate seconds.
        await asyncio.sleep(1.05)
        async with first.get(node.url + SEGMENT) as response:
            assert response.status == 200
        async with monitor.get(node.url + "/metrics") as response:
            metrics = parse_metrics(await response.text())
        assert metrics["shoal_rate_limited_total"] == 2
        assert origin.count(SEGMENT) == 1


# ---- slow clients and idle connections -----------------------------------------------------------


async def test_slowloris_is_disconnected_after_client_timeout_others_are_served(
    origin: Upstream,
) -> None:
    config = node_config([origin.url], client_timeout=1.5, keepalive_timeout=30.0)
    async with limited_node(config) as node, session_from("127.0.0.1") as http:
        loop = asyncio.get_running_loop()
        reader, writer = await connect(node)
        silent_reader, silent_writer = await connect(node)  # opens and never sends a byte
        started = loop.time()
        head = request_bytes(SEGMENT, "X-Padding: " + "a" * 64)
        served: list[float] = []

        async def normal_client() -> None:
            # Requests all along, each on a connection of its own, while the slowloris dribbles.
            while loop.time() - started < 2.5:
                sent = loop.time()
                async with http.get(node.url + SEGMENT) as response:
                    assert response.status == 200
                    assert await response.read() == BODY
                served.append(loop.time() - sent)
                await asyncio.sleep(0.1)

        normal = asyncio.create_task(normal_client())
        closed_after = None
        for byte in head:  # one header byte a second
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                closed_after = loop.time() - started
                break
            if await closed_by_peer(reader, 1.0):
                closed_after = loop.time() - started
                break
        assert closed_after is not None and 1.4 <= closed_after <= 2.6, closed_after
        assert await closed_by_peer(silent_reader, 0.5)
        await normal
        assert len(served) >= 10
        assert max(served) < 0.5, served
        assert node.limits.slow_clients_closed == 2
        writer.close()
        silent_writer.close()


async def test_idle_keepalive_connection_is_closed_after_keepalive_timeout(
    origin: Upstream,
) -> None:
    config = node_config([origin.url], client_timeout=5.0, keepalive_timeout=0.6)
    async with limited_node(config) as node:
        reader, writer = await connect(node)
        writer.write(request_bytes())
        assert await read_response(reader) == (200, BODY)
        # Within the keep-alive timeout the connection carries the next request...
        await asyncio.sleep(0.3)
        writer.write(request_bytes())
        assert await read_response(reader) == (200, BODY)
        # ...idle for longer, it is closed (by aiohttp's keep-alive timer, not client_timeout).
        idle_since = time.monotonic()
        assert await closed_by_peer(reader, 3.0)
        assert 0.5 <= time.monotonic() - idle_since <= 1.6
        assert node.limits.slow_clients_closed == 0
        writer.close()


# ---- connections ---------------------------------------------------------------------------------


async def test_connection_past_max_connections_is_refused_the_others_keep_working(
    origin: Upstream,
) -> None:
    config = node_config([origin.url], max_connections=3)
    async with limited_node(config) as node:
        connections = [await connect(node) for _ in range(3)]
        for reader, writer in connections:
            writer.write(request_bytes())
            assert await read_response(reader) == (200, BODY)
        assert node.limits.open_connections == 3
        extra_reader, extra_writer = await connect(node)  # the kernel accepts; the node aborts
        assert await closed_by_peer(extra_reader, 2.0)
        extra_writer.close()
        assert node.limits.refused_connections == 1
        for reader, writer in connections:
            writer.write(request_bytes())
            assert await read_response(reader) == (200, BODY)
        # One leaves: a new connection is admitted.
        connections[0][1].close()
        await wait_for(lambda: node.limits.open_connections == 2)
        reader, writer = await connect(node)
        writer.write(request_bytes())
        assert await read_response(reader) == (200, BODY)
        for _, other in [*connections[1:], (reader, writer)]:
            other.close()


# ---- head and body sizes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_head",
    [
        request_bytes(SEGMENT, "X-Big: " + "a" * 300),  # one field too long
        request_bytes("/v/" + "a" * 300),  # request line too long
    ],
    ids=["field", "request-line"],
)
async def test_oversized_head_is_answered_400(origin: Upstream, request_head: bytes) -> None:
    """aiohttp answers an over-long request line or field itself: 400 Bad Request."""
    config = node_config([origin.url], max_header_bytes=256)
    async with limited_node(config) as node:
        reader, writer = await connect(node)
        writer.write(request_head)
        status, body = await read_response(reader)
        assert status == 400
        assert b"Got more than 256 bytes" in body
        assert await closed_by_peer(reader, 2.0)
        writer.close()
        # A head within the limit is served.
        reader, writer = await connect(node)
        writer.write(request_bytes(SEGMENT, "X-Fits: " + "a" * 200))
        assert await read_response(reader) == (200, BODY)
        writer.close()
    assert origin.count() == 1


async def test_oversized_body_is_answered_413(origin: Upstream) -> None:
    async with (
        limited_node(node_config([origin.url])) as node,
        client_session() as http,
        http.post(node.url + "/v/abc/upload", data=b"x" * (1024 * 1024 + 1)) as response,
    ):
        assert response.status == 413
    assert origin.count() == 0


# ---- slow upstreams ------------------------------------------------------------------------------


async def test_dripping_upstream_is_cut_at_upstream_total_timeout_nothing_stored() -> None:
    attempts = 0

    async def drip_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        head = response_head(Content_Length=str(len(BODY)), Cache_Control="max-age=3600")
        writer.write(head)
        if attempts > 1:
            writer.write(BODY)
            await writer.drain()
            return
        try:
            for offset in range(0, len(BODY), 8):  # 8 bytes every 0.1 s: 12.8 s in all
                writer.write(BODY[offset : offset + 8])
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            return

    upstream = await RawUpstream(drip_first).start()
    # Each gap between reads (0.1 s) is far below upstream_timeout: only the total bounds it.
    config = node_config(
        [upstream.url], upstream_timeout=5.0, upstream_total_timeout=1.0, max_connections=10
    )
    try:
        async with limited_node(config) as node, client_session() as http:
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with http.get(node.url + SEGMENT) as response:
                assert response.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await response.read()
            assert 0.9 <= loop.time() - started <= 2.0
            await wait_for(lambda: node.runner.open_fetches == 0)
            assert node.runner.node.stored_objects == 0
            async with http.get(node.url + SEGMENT) as response:
                assert response.status == 200
                assert await response.read() == BODY
            assert upstream.requests(SEGMENT) == 2
            assert node.runner.node.stored_objects == 1
    finally:
        await upstream.stop()
