"""The lean HTTP/1.1 protocol on the wire: pipelining, framing, hand-off to aiohttp, shutdown.

Raw bytes over TCP, because these are properties of the byte stream that a client library hides:
the order of pipelined answers, `Connection: close` for HTTP/1.0, chunked coding when the length
is unknown, and a connection that starts lean and carries on in aiohttp after an admin request.
"""

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from edge.http1 import EdgeConnection
from tests.edge.harness import (
    Node,
    Upstream,
    client_session,
    node_config,
    raw_exchange,
    status_of,
)

SEGMENT = "/v/lean/360p/seg_00001.m4s"
PLAYLIST = "/v/lean/360p/index.m3u8"
STREAMED = "/v/lean/360p/seg_00002.m4s"
BODY = os.urandom(100_000)
PLAYLIST_BODY = b"#EXTM3U\n" + b"#" * 500 + b"\n"


@pytest.fixture
async def origin() -> AsyncIterator[Upstream]:
    stub = await Upstream().start()
    stub.static(SEGMENT, BODY, headers={"Cache-Control": "max-age=600"})
    stub.static(PLAYLIST, PLAYLIST_BODY, headers={"Cache-Control": "max-age=600"})

    async def unknown_length(request: web.Request) -> web.StreamResponse:
        # No Content-Length: aiohttp sends the body chunked.
        response = web.StreamResponse(headers={"Cache-Control": "max-age=600"})
        await response.prepare(request)
        for start in range(0, len(BODY), 30_000):
            await response.write(BODY[start : start + 30_000])
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    stub.route(STREAMED, unknown_length)
    yield stub
    await stub.stop()


@pytest.fixture
async def node(origin: Upstream) -> AsyncIterator[Node]:
    started = await Node(node_config([origin.url])).start()
    yield started
    await started.stop()


def get(target: str, *fields: str, version: str = "1.1") -> bytes:
    lines = [f"GET {target} HTTP/{version}", "Host: edge", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def split_responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Consecutive responses framed by Content-Length: (status, fields, body) each."""
    responses = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        length = int(fields.get("content-length", "0"))
        responses.append((int(lines[0].split(" ")[1]), fields, rest[:length]))
        raw = rest[length:]
    return responses


async def test_pipelined_requests_are_answered_in_order_across_a_miss(
    node: Node, origin: Upstream
) -> None:
    # A hit, a miss (the answer waits for the upstream), then hits behind it: the answers leave
    # in the order of the requests.
    await raw_exchange(node.url, get(PLAYLIST, "Connection: close"))
    pipelined = (
        get(PLAYLIST)
        + get(SEGMENT)
        + get(PLAYLIST)
        + get(SEGMENT)
        + get(PLAYLIST, "Connection: close")
    )
    responses = split_responses(await raw_exchange(node.url, pipelined))
    assert [(status, body) for status, _, body in responses] == [
        (200, PLAYLIST_BODY),
        (200, BODY),
        (200, PLAYLIST_BODY),
        (200, BODY),
        (200, PLAYLIST_BODY),
    ]
    assert responses[1][1]["cache-status"].startswith("edge-t; fwd=uri-miss")
    assert responses[3][1]["cache-status"].startswith("edge-t; hit")
    assert responses[4][1]["connection"] == "close"
    assert origin.count(SEGMENT) == 1


async def test_http_1_0_gets_its_answer_then_the_connection_closes(node: Node) -> None:
    raw = await raw_exchange(node.url, get(PLAYLIST, version="1.0"), timeout=3)
    ((status, fields, body),) = split_responses(raw)
    assert (status, body, fields["connection"]) == (200, PLAYLIST_BODY, "close")
    # Asking to keep it alive is honoured: the connection stays open for a second request.
    keep = get(PLAYLIST, "Connection: keep-alive", version="1.0")
    raw = await raw_exchange(node.url, keep + get(PLAYLIST, version="1.0"), timeout=3)
    assert [status for status, _, _ in split_responses(raw)] == [200, 200]


async def test_a_body_of_unknown_length_is_streamed_chunked(node: Node) -> None:
    raw = await raw_exchange(node.url, get(STREAMED, "Connection: close"), timeout=5)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    body = bytearray()
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        body += rest[:size]
        rest = rest[size + 2 :]
        if size == 0:
            break
    assert bytes(body) == BODY
    # Once complete it is stored with its length, and a hit says so.
    hit = split_responses(await raw_exchange(node.url, get(STREAMED, "Connection: close")))
    assert hit[0][2] == BODY and hit[0][1]["content-length"] == str(len(BODY))


async def test_an_admin_request_hands_the_connection_to_aiohttp(node: Node) -> None:
    # Content, then /metrics, then content again on one connection: all answered, in order.
    pipelined = get(PLAYLIST) + get("/metrics") + get(PLAYLIST, "Connection: close")
    raw = await raw_exchange(node.url, pipelined)
    first, _, rest = raw.partition(PLAYLIST_BODY)
    assert status_of(first) == 200
    assert b"shoal_request_seconds_count" in rest
    assert rest.endswith(PLAYLIST_BODY)
    assert rest.count(b"HTTP/1.1 200 OK") == 2


async def test_a_slow_body_is_cut_at_client_timeout(origin: Upstream) -> None:
    node = await Node(node_config([origin.url], client_timeout=0.3)).start()
    try:
        host, port = node.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v/lean/form HTTP/1.1\r\nHost: e\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        async with asyncio.timeout(3):
            assert await reader.read() == b""  # closed with nothing sent
        writer.close()
        assert node.limits.slow_clients_closed == 1
        assert origin.count("/v/lean/form") == 0
    finally:
        await node.stop()


async def test_shutdown_lets_a_response_in_flight_finish(origin: Upstream) -> None:
    origin.static("/v/lean/slow.m4s", BODY, headers={"Cache-Control": "max-age=60"}, delay=0.5)
    node = await Node(node_config([origin.url])).start()
    async with client_session() as http:
        pending = asyncio.ensure_future(http.get(node.url + "/v/lean/slow.m4s"))
        await asyncio.sleep(0.2)
        stopping = asyncio.ensure_future(node.stop())
        response = await pending
        assert response.status == 200 and await response.read() == BODY
        await stopping


async def test_content_is_answered_by_the_lean_protocol_admin_routes_by_aiohttp(
    node: Node,
) -> None:
    async with client_session() as http:
        async with http.get(node.url + PLAYLIST) as response:
            assert await response.read() == PLAYLIST_BODY
            (connection,) = node.listener.open
            assert isinstance(connection, EdgeConnection)
            assert not connection.handed_off
        async with http.get(node.url + "/healthz") as health:
            assert health.status == 200
        # The same connection, now aiohttp's.
        assert node.listener.open == {connection}
        assert connection.handed_off
