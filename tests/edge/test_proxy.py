"""The pass-through edge: forwarding, header hygiene, failover and path safety, on real sockets."""

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from core.config import CacheNodeConfig
from edge.proxy import make_edge_app

BIG_BODY = bytes(range(256)) * 8192  # 2 MiB, larger than any single read


SEEN_PATHS = web.AppKey("seen_paths", list[str])


async def _echo(request: web.Request) -> web.StreamResponse:
    """An upstream that shows what it received, and serves one big body."""
    request.app[SEEN_PATHS].append(request.raw_path)
    if request.path.endswith("/big.m4s"):
        response = web.StreamResponse(headers={"Content-Type": "video/iso.segment"})
        response.content_length = len(BIG_BODY)
        await response.prepare(request)
        if request.method != "HEAD":
            await response.write(BIG_BODY)
        return response
    return web.json_response(
        {
            "path": request.raw_path,
            "headers": dict(request.headers),
        },
        headers={
            "Cache-Control": "public, max-age=2",
            "ETag": '"v1"',
            "Connection": "X-Secret",
            "X-Secret": "hop-by-hop",
        },
    )


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    app = web.Application()
    app[SEEN_PATHS] = []
    app.router.add_route("*", "/{tail:.*}", _echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def _closed_port_url() -> str:
    # Bind then close: nothing listens there while the test runs (connection refused).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def _edge(upstreams: list[str]) -> TestClient[web.Request, web.Application]:
    config = CacheNodeConfig(upstreams=upstreams, connect_timeout=1.0, upstream_timeout=5.0)
    client = TestClient(TestServer(make_edge_app(config, tier="edge", name="edge-t")))
    await client.start_server()
    return client


async def test_forwards_path_query_and_end_to_end_headers(upstream: TestServer) -> None:
    client = await _edge([str(upstream.make_url(""))])
    try:
        response = await client.get(
            "/v/abc/720p/index.m3u8?token=x",
            headers={"Range": "bytes=0-10", "If-None-Match": '"v0"', "Connection": "keep-alive"},
        )
        assert response.status == 200
        seen = await response.json()
        assert seen["path"] == "/v/abc/720p/index.m3u8?token=x"
        assert seen["headers"]["Range"] == "bytes=0-10"
        assert seen["headers"]["If-None-Match"] == '"v0"'
        assert seen["headers"]["Via"] == "1.1 edge-t"
        assert response.headers["Cache-Control"] == "public, max-age=2"
        assert response.headers["ETag"] == '"v1"'
        assert response.headers["Via"] == "1.1 edge-t"
        # Fields the upstream marked hop-by-hop via Connection are not relayed.
        assert "X-Secret" not in response.headers
    finally:
        await client.close()


async def test_streams_large_bodies_and_head(upstream: TestServer) -> None:
    client = await _edge([str(upstream.make_url(""))])
    try:
        response = await client.get("/v/abc/720p/big.m4s")
        assert response.status == 200
        assert await response.read() == BIG_BODY
        head = await client.head("/v/abc/720p/big.m4s")
        assert head.status == 200
        assert head.headers["Content-Length"] == str(len(BIG_BODY))
        assert await head.read() == b""
    finally:
        await client.close()


async def test_fails_over_to_the_next_upstream(upstream: TestServer) -> None:
    client = await _edge([_closed_port_url(), str(upstream.make_url(""))])
    try:
        response = await client.get("/v/abc/master.m3u8")
        assert response.status == 200
        assert (await response.json())["path"] == "/v/abc/master.m3u8"
    finally:
        await client.close()


async def test_502_when_no_upstream_answers() -> None:
    dead = _closed_port_url()
    client = await _edge([dead])
    try:
        response = await client.get("/v/abc/master.m3u8")
        assert response.status == 502
        assert dead in await response.text()
    finally:
        await client.close()


async def test_only_get_and_head(upstream: TestServer) -> None:
    client = await _edge([str(upstream.make_url(""))])
    try:
        response = await client.post("/v/abc/master.m3u8", data=b"x")
        assert response.status == 405
        assert response.headers["Allow"] == "GET,HEAD"
    finally:
        await client.close()


@pytest.mark.parametrize(
    "raw_path",
    ["/v/%2e%2e/secret", "/v/abc/%2E%2E%2Fsecret", "/v/a/%00", "/v//etc/passwd", "/v/a/../b"],
)
async def test_unsafe_paths_are_refused_before_forwarding(
    upstream: TestServer, raw_path: str
) -> None:
    client = await _edge([str(upstream.make_url(""))])
    try:
        url = URL(str(client.make_url("")).rstrip("/") + raw_path, encoded=True)
        response = await client.session.get(url)
        assert response.status == 400
        assert upstream.app[SEEN_PATHS] == []
    finally:
        await client.close()


async def test_health_reports_tier_and_upstreams(upstream: TestServer) -> None:
    base = str(upstream.make_url(""))
    client = await _edge([base])
    try:
        response = await client.get("/healthz")
        assert await response.json() == {
            "status": "ok",
            "kind": "edge",
            "name": "edge-t",
            "upstreams": [base],
        }
    finally:
        await client.close()
