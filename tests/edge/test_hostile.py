"""A cache node against bad input: broken clients, hostile admin requests, broken upstreams.

What must hold whatever comes in: every client gets an answer (an error status, or a stream cut
short that it can detect because fewer bytes arrive than Content-Length announced), nothing
partial is ever stored (the next request fetches again), and the node keeps serving afterwards.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from edge.app import MAX_ADMIN_BODY
from tests.edge.harness import (
    FakeClock,
    Node,
    RawUpstream,
    Upstream,
    client_session,
    node_config,
    raw_exchange,
    reset,
    response_head,
    status_of,
    wait_for,
)

SEGMENT = "/v/abc/360p/seg_00001.m4s"
BODY = bytes(range(256)) * 4
BIG = bytes(range(256)) * 1024  # 256 KiB: several reads, so a cut lands mid-body
PURGE = {"Authorization": "Bearer purge-secret"}
HINTS = {"Authorization": "Bearer hint-secret"}


@pytest.fixture
async def origin() -> AsyncIterator[Upstream]:
    stub = await Upstream().start()
    stub.static(SEGMENT, BODY, headers={"Cache-Control": "max-age=60", "ETag": '"v1"'})
    yield stub
    await stub.stop()


@pytest.fixture
async def node(origin: Upstream) -> AsyncIterator[Node]:
    started = await Node(node_config([origin.url])).start()
    yield started
    await started.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    session = client_session()
    yield session
    await session.close()


async def get(http: aiohttp.ClientSession, node: Node, target: str = SEGMENT) -> tuple[int, bytes]:
    async with http.get(URL(node.url + target, encoded=True)) as response:
        return response.status, await response.read()


async def assert_still_serving(http: aiohttp.ClientSession, node: Node) -> None:
    async with http.get(node.url + "/healthz") as response:
        assert response.status == 200
    assert node.runner.open_requests == 0


# ---- malformed requests -------------------------------------------------------------------------


HEAD_END = b"Host: x\r\n\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /v/abc HTTP/1.1 extra\r\n" + HEAD_END,
        b"GET /v/abc HTTP/9.9\r\n" + HEAD_END,
        b"GET /v/abc HTTP/1.1\r\nBad Header: x\r\n" + HEAD_END,
        b"GET /v/abc HTTP/1.1\r\nX: a\x00b\r\n" + HEAD_END,
        b"GET /v/abc HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n" + HEAD_END,
        b"GET /v/abc HTTP/1.1\r\nContent-Length: -1\r\n" + HEAD_END,
        b"GET /v/abc HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n" + HEAD_END,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
        b"GET /v/\xc3\xa9/seg.m4s HTTP/1.1\r\n" + HEAD_END,
        b"GET /v/abc/seg.m4s?q=\xff HTTP/1.1\r\n" + HEAD_END,
        b"GET * HTTP/1.1\r\n" + HEAD_END,
        b"GET http://elsewhere.example/v/abc/seg.m4s HTTP/1.1\r\n" + HEAD_END,
    ],
    ids=[
        "no-version",
        "method-only",
        "extra-token",
        "bad-version",
        "space-in-name",
        "nul-in-value",
        "two-lengths",
        "negative-length",
        "chunked-and-length",
        "tls",
        "non-ascii-path",
        "non-ascii-query",
        "asterisk-form",
        "absolute-form",
    ],
)
async def test_malformed_requests_are_400(
    node: Node, origin: Upstream, http: aiohttp.ClientSession, request_bytes: bytes
) -> None:
    raw = await raw_exchange(node.url, request_bytes, timeout=2)
    assert status_of(raw) == 400
    assert origin.count() == 0
    await assert_still_serving(http, node)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v/" + b"a" * 9000 + b" HTTP/1.1\r\n" + HEAD_END,
        b"GET /v/abc HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n" + HEAD_END,
        b"GET /v/abc HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + HEAD_END,
    ],
    ids=["long-request-line", "long-field", "too-many-fields"],
)
async def test_oversized_request_heads_are_refused(
    node: Node, origin: Upstream, http: aiohttp.ClientSession, request_bytes: bytes
) -> None:
    """RFC 9110 section 15.5.1 makes 400 the generic answer; RFC 6585 section 5's 431 (and RFC
    9110 section 15.5.15's 414 for a long target) would be more precise, but aiohttp's parser
    answers every parse error, limits included, with a hard-coded 400 (web_protocol.py,
    `data_received`), and no setting changes that. The limits themselves (8190-byte lines and
    fields, 128 fields) are aiohttp's defaults."""
    raw = await raw_exchange(node.url, request_bytes, timeout=2)
    assert status_of(raw) == 400
    assert origin.count() == 0
    await assert_still_serving(http, node)


@pytest.mark.parametrize(
    ("range_field", "status"),
    [
        ("bytes=99999999999999999999999999999-", 416),
        ("bytes=0-99999999999999999999999999999", 206),
        ("bytes=-99999999999999999999999999999", 206),
        ("bytes=" + "0-0," * 2000, 200),  # longer than any real player sends: ignored
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(0, 40, 2)), 200),  # too many ranges
        ("bytes=--1", 200),
        ("bytes=1-2-3", 200),
        ("bytes=\u0661-\u0662", 200),  # Arabic-Indic digits are not DIGIT
        ("bytes=", 200),
        ("bytes=0-0, 0-0, 0-0", 206),
    ],
)
async def test_absurd_ranges(
    node: Node, origin: Upstream, http: aiohttp.ClientSession, range_field: str, status: int
) -> None:
    await get(http, node)
    async with http.get(
        node.url + SEGMENT, headers={"Range": range_field.encode().decode("latin-1")}
    ) as response:
        body = await response.read()
        assert response.status == status
        if status == 200:
            assert body == BODY
        if status == 206:
            assert len(body) == int(response.headers["Content-Length"])
    assert origin.count() == 1


@pytest.mark.parametrize(
    "raw_path",
    [
        "/v/%2e%2e/secret",
        "/v/abc/%2E%2E%2Fsecret",
        "/v/a/%00",
        "/v//etc/passwd",
        "/v/a/../b",
        "/v/abc/..%2f..%2fetc/passwd",
        "/v/abc/%5c..%5csecret",
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
async def test_unsafe_paths_are_refused_before_any_upstream_request(
    node: Node, origin: Upstream, http: aiohttp.ClientSession, raw_path: str, method: str
) -> None:
    async with http.request(method, URL(node.url + raw_path, encoded=True)) as response:
        assert response.status == 400
    assert origin.count() == 0


async def test_unsafe_raw_targets_on_the_wire(node: Node, origin: Upstream) -> None:
    # What the client library might normalise away: dot segments sent literally.
    for target in (b"/v/abc/../../etc/passwd", b"/v/./abc/seg.m4s", b"/v/abc/%2e%2e/x"):
        raw = await raw_exchange(
            node.url, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status_of(raw) == 400, target
    assert origin.count() == 0


async def test_refused_methods(node: Node, origin: Upstream, http: aiohttp.ClientSession) -> None:
    async with http.request("TRACE", node.url + SEGMENT) as response:
        assert response.status == 405
    assert origin.count() == 0


# ---- admin routes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("route", "good"), [("/_shoal/purge", PURGE), ("/_shoal/trending", HINTS)])
async def test_admin_authentication(
    node: Node, http: aiohttp.ClientSession, route: str, good: dict[str, str]
) -> None:
    document: dict[str, object] = {"path": SEGMENT} if route.endswith("purge") else {"videos": []}
    for headers in ({}, {"Authorization": "Basic cHVyZ2U6c2VjcmV0"}, {"Authorization": "Bearer "}):
        async with http.post(node.url + route, json=document, headers=headers) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")
    for token in ("wrong", "purge-secre", "purge-secret-and-more", "hint-secret purge-secret"):
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(node.url + route, json=document, headers=headers) as response:
            assert response.status == 403
    # The purge token does not open the hints API, nor the reverse.
    other = HINTS if good is PURGE else PURGE
    async with http.post(node.url + route, json=document, headers=other) as response:
        assert response.status == 403
    async with http.post(node.url + route, json=document, headers=good) as response:
        assert response.status == 200


async def test_admin_disabled_without_a_configured_token(
    origin: Upstream, http: aiohttp.ClientSession
) -> None:
    node = await Node(node_config([origin.url], purge_token="", hint_token="")).start()
    try:
        for route, document in (
            ("/_shoal/purge", {"path": SEGMENT}),
            ("/_shoal/trending", {"videos": ["abc"]}),
        ):
            headers = {"Authorization": "Bearer anything"}
            async with http.post(node.url + route, json=document, headers=headers) as response:
                assert response.status == 403
                assert "disabled" in await response.text()
            # An empty bearer token never matches an empty configured one.
            async with http.post(
                node.url + route, json=document, headers={"Authorization": "Bearer"}
            ) as response:
                assert response.status == 401
    finally:
        await node.stop()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"path"',
        b'{"path": 5}',
        b'{"path": "/v/abc/seg.m4s", "video": "abc"}',
        b'{"video": "../etc"}',
        b'{"video": "a/b"}',
        b'{"video": ""}',
        b'{"path": "/v/../etc/passwd"}',
        b'{"path": "/v/%2e%2e/x"}',
        b"\xff\xfe{}",
        b'{"path": "/v/abc' + b"\xff" + b'"}',
        b"{" * 5000 + b"}" * 5000,
    ],
)
async def test_malformed_purge_requests_are_400(
    node: Node, http: aiohttp.ClientSession, body: bytes
) -> None:
    async with http.post(node.url + "/_shoal/purge", data=body, headers=PURGE) as response:
        assert response.status == 400
    await assert_still_serving(http, node)


@pytest.mark.parametrize(
    "body",
    [
        b'{"videos": "abc"}',
        b'{"videos": [1]}',
        b'{"videos": ["a/b"]}',
        b'{"video": ["abc"]}',
        b"[]",
    ],
)
async def test_malformed_trending_hints_are_400(
    node: Node, http: aiohttp.ClientSession, body: bytes
) -> None:
    async with http.post(node.url + "/_shoal/trending", data=body, headers=HINTS) as response:
        assert response.status == 400


async def test_too_many_trending_ids_are_400(node: Node, http: aiohttp.ClientSession) -> None:
    videos = [f"v{i}" for i in range(1001)]
    async with http.post(
        node.url + "/_shoal/trending", json={"videos": videos}, headers=HINTS
    ) as response:
        assert response.status == 400


async def test_oversized_admin_bodies_are_413(node: Node, http: aiohttp.ClientSession) -> None:
    padding = b" " * (MAX_ADMIN_BODY + 1)
    body = b'{"path": "/v/abc/360p/seg_00001.m4s"}' + padding
    # With a Content-Length, refused from the head alone.
    async with http.post(node.url + "/_shoal/purge", data=body, headers=PURGE) as response:
        assert response.status == 413

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]
            await asyncio.sleep(0)

    # Chunked, so only counting the bytes tells: a valid document followed by too much padding
    # is still too large, however the bytes happen to arrive.
    async with http.post(node.url + "/_shoal/purge", data=chunked(), headers=PURGE) as response:
        assert response.status == 413
    await assert_still_serving(http, node)


async def test_oversized_forwarded_bodies_are_413(
    node: Node, origin: Upstream, http: aiohttp.ClientSession
) -> None:
    async with http.post(node.url + SEGMENT, data=b"x" * (2 * 1024 * 1024)) as response:
        assert response.status == 413
    assert origin.count() == 0


# ---- purge --------------------------------------------------------------------------------------


async def purge(http: aiohttp.ClientSession, node: Node, document: dict[str, str]) -> int:
    async with http.post(node.url + "/_shoal/purge", json=document, headers=PURGE) as response:
        assert response.status == 200
        purged: int = (await response.json())["purged"]
        return purged


async def test_purge_removes_the_object(
    node: Node, origin: Upstream, http: aiohttp.ClientSession
) -> None:
    await get(http, node)
    await get(http, node)
    assert origin.count() == 1
    assert await purge(http, node, {"path": SEGMENT}) == 1
    assert node.runner.memory == {}
    assert await get(http, node) == (200, BODY)
    assert origin.count() == 2
    assert await purge(http, node, {"path": "/v/abc/360p/never.m4s"}) == 0


async def test_purge_removes_every_query_variant_of_a_path(
    node: Node, origin: Upstream, http: aiohttp.ClientSession
) -> None:
    for query in ("", "?a=1", "?token=x"):
        await get(http, node, SEGMENT + query)
    assert origin.count() == 3
    assert await purge(http, node, {"path": SEGMENT}) == 3
    for query in ("", "?a=1", "?token=x"):
        await get(http, node, SEGMENT + query)
    assert origin.count() == 6


async def test_purge_a_whole_video(
    node: Node, origin: Upstream, http: aiohttp.ClientSession
) -> None:
    paths = ["/v/abc/master.m3u8", "/v/abc/360p/init.mp4", "/v/abcd/360p/init.mp4", "/v/x/abc/1"]
    for path in paths:
        origin.static(path, path.encode(), headers={"Cache-Control": "max-age=60"})
        await get(http, node, path)
    assert await purge(http, node, {"video": "abc"}) == 2
    for path in paths:
        await get(http, node, path)
    # Only /v/abc/... went upstream again; /v/abcd/ and the rest were hits.
    assert [origin.count(path) for path in paths] == [2, 2, 1, 1]


def _pausing_after_1000_bytes(
    release: asyncio.Event,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An upstream handler that sends BIG's first 1000 bytes, then waits for `release`."""

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Cache-Control": "max-age=60"})
        response.content_length = len(BIG)
        await response.prepare(request)
        await response.write(BIG[:1000])
        await release.wait()
        await response.write(BIG[1000:])
        return response

    return slow


async def test_purge_during_a_fetch_keeps_its_result_out_of_the_cache(
    node: Node, origin: Upstream, http: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    origin.route(SEGMENT, _pausing_after_1000_bytes(release))
    in_flight = asyncio.create_task(get(http, node))
    while origin.count() == 0:
        await asyncio.sleep(0.01)
    assert await purge(http, node, {"path": SEGMENT}) == 1
    release.set()
    assert await in_flight == (200, BIG)  # the client in flight still gets its answer
    assert node.runner.memory == {}
    origin.static(SEGMENT, b"new", headers={"Cache-Control": "max-age=60"})
    assert await get(http, node) == (200, b"new")


# ---- broken upstreams ---------------------------------------------------------------------------


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(0.2)  # long enough for every concurrent request to be waiting
    writer.write(b"SSH-2.0-OpenSSH_9.6 this is not HTTP\r\n\r\n")
    await writer.drain()


async def _short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(response_head(Content_Length=str(len(BIG)), Cache_Control="max-age=60"))
    writer.write(BIG[: len(BIG) // 2])
    await writer.drain()
    await asyncio.sleep(0.2)


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(response_head(Content_Length=str(len(BIG)), Cache_Control="max-age=60"))
    writer.write(BIG[: len(BIG) // 2])
    await writer.drain()
    await asyncio.sleep(0.2)
    reset(writer)


async def _chunked_then_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(response_head(Transfer_Encoding="chunked", Cache_Control="max-age=60"))
    writer.write(b"%x\r\n%s\r\n" % (1000, BIG[:1000]))
    await writer.drain()
    await asyncio.sleep(0.2)
    reset(writer)


async def _good(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(response_head(Content_Length=str(len(BIG)), Cache_Control="max-age=60") + BIG)
    await writer.drain()


async def _concurrent_gets(node: Node, count: int) -> list[tuple[int, bytes | Exception]]:
    async def one(session: aiohttp.ClientSession) -> tuple[int, bytes | Exception]:
        async with session.get(node.url + SEGMENT) as response:
            try:
                return response.status, await response.read()
            except aiohttp.ClientPayloadError as exc:
                return response.status, exc

    async with client_session() as session:
        return await asyncio.gather(*(one(session) for _ in range(count)))


async def _broken_upstream_node(behaviour: object) -> tuple[RawUpstream, Node]:
    upstream = await RawUpstream(behaviour).start()  # type: ignore[arg-type]
    node = await Node(node_config([upstream.url], upstream_timeout=1.0)).start()
    return upstream, node


async def test_garbage_from_the_upstream_is_502_for_every_waiter() -> None:
    upstream, node = await _broken_upstream_node(_garbage)
    try:
        results = await _concurrent_gets(node, 10)
        assert [status for status, _ in results] == [502] * 10
        assert upstream.requests(SEGMENT) == 1
        upstream.behaviour = _good
        results = await _concurrent_gets(node, 3)
        assert results == [(200, BIG)] * 3
        assert upstream.requests(SEGMENT) == 2
    finally:
        await node.stop()
        await upstream.stop()


@pytest.mark.parametrize(
    "behaviour", [_short, _reset, _chunked_then_reset], ids=["short", "reset", "chunked-reset"]
)
async def test_a_body_cut_mid_way_is_cut_for_every_client_and_never_stored(
    behaviour: object,
) -> None:
    upstream, node = await _broken_upstream_node(behaviour)
    try:
        results = await _concurrent_gets(node, 10)
        for status, outcome in results:
            assert status == 200  # the head was already sent when the body broke...
            assert isinstance(outcome, aiohttp.ClientPayloadError)  # ...so the stream is cut
        assert upstream.requests(SEGMENT) == 1
        assert node.runner.memory == {} and node.runner.node.stored_objects == 0
        assert node.runner.open_fetches == 0
        # Nothing partial was stored: the next request fetches again, and succeeds.
        upstream.behaviour = _good
        assert await _concurrent_gets(node, 3) == [(200, BIG)] * 3
        assert upstream.requests(SEGMENT) == 2
        assert await _concurrent_gets(node, 1) == [(200, BIG)]
        assert upstream.requests(SEGMENT) == 2
    finally:
        await node.stop()
        await upstream.stop()


async def test_a_silent_upstream_times_out_with_502() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    upstream, node = await _broken_upstream_node(silent)
    try:
        results = await asyncio.wait_for(_concurrent_gets(node, 5), 5)
        assert [status for status, _ in results] == [502] * 5
    finally:
        await node.stop()
        await upstream.stop()


async def test_no_upstream_answering_is_502(http: aiohttp.ClientSession) -> None:
    from tests.edge.harness import closed_port_url

    dead = closed_port_url()
    node = await Node(node_config([dead], origin=closed_port_url())).start()
    try:
        status, body = await get(http, node)
        assert status == 502
        assert b"no upstream answered" in body
        await assert_still_serving(http, node)
    finally:
        await node.stop()


async def test_a_client_that_leaves_mid_stream_does_not_disturb_the_others(
    node: Node, origin: Upstream
) -> None:
    release = asyncio.Event()

    origin.route(SEGMENT, _pausing_after_1000_bytes(release))
    async with client_session() as quitter:
        response = await quitter.get(node.url + SEGMENT)
        await response.content.readexactly(500)
        response.close()  # gone mid-body
    stayer = asyncio.create_task(_concurrent_gets(node, 1))
    await asyncio.sleep(0.1)
    release.set()
    assert await stayer == [(200, BIG)]
    assert await _concurrent_gets(node, 1) == [(200, BIG)]
    assert origin.count() == 1


async def test_purge_before_the_upstream_answers_keeps_the_result_out_of_the_cache(
    node: Node, origin: Upstream, http: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(body=b"old", headers={"Cache-Control": "max-age=60"})

    origin.route(SEGMENT, held)
    in_flight = asyncio.create_task(get(http, node))
    await wait_for(lambda: origin.count() == 1)
    assert await purge(http, node, {"path": SEGMENT}) == 1  # the fetch in flight
    release.set()
    assert await in_flight == (200, b"old")  # its client is answered...
    origin.static(SEGMENT, b"new", headers={"Cache-Control": "max-age=60"})
    assert await get(http, node) == (200, b"new")  # ...but what it brought was not stored
    assert node.runner.node.stored_objects == 1


@pytest.mark.parametrize("answer", ["304", "500", "reset"])
async def test_purge_during_a_revalidation(answer: str, http: aiohttp.ClientSession) -> None:
    """The stale copy being revalidated is purged before the upstream answers: whatever the
    answer (a 304 that would have freshened it, an error that would have let it be served
    stale), the purged copy is never served, and the waiting client is still answered."""
    clock = FakeClock()
    origin = await Upstream(clock).start()
    cache_control = "max-age=1, stale-if-error=600"
    origin.static(SEGMENT, b"old", headers={"Cache-Control": cache_control, "ETag": '"v1"'})
    node = await Node(node_config([origin.url]), clock=clock).start()
    release = asyncio.Event()

    async def revalidation(request: web.Request) -> web.Response:
        await release.wait()
        if answer == "304":
            return web.Response(status=304, headers=origin.fields({"ETag": '"v1"'}))
        if answer == "500":
            return web.Response(status=500, text="broken\n")
        assert request.transport is not None
        request.transport.abort()  # the connection breaks with the request unanswered
        return web.Response(status=500)

    try:
        assert await get(http, node) == (200, b"old")
        clock.advance(5)
        origin.route(SEGMENT, revalidation)
        waiting = asyncio.create_task(get(http, node))
        await wait_for(lambda: origin.count() == 2)
        assert await purge(http, node, {"path": SEGMENT}) == 1
        origin.static(SEGMENT, b"new", headers={"Cache-Control": "max-age=60", "ETag": '"v2"'})
        release.set()
        status, body = await asyncio.wait_for(waiting, 5)
        assert body != b"old"
        if answer == "304":
            assert (status, body) == (200, b"new")  # fetched again in full
        assert node.runner.open_requests == 0
        assert await get(http, node) == (200, b"new")
    finally:
        await node.stop()
        await origin.stop()


@pytest.mark.parametrize("answer", ["304", "500"])
async def test_eviction_during_a_revalidation(answer: str, http: aiohttp.ClientSession) -> None:
    """Like a purge, an eviction can take the stale copy away while it is being revalidated."""
    clock = FakeClock()
    origin = await Upstream(clock).start()
    other = "/v/abc/360p/seg_00002.m4s"
    fields = {"Cache-Control": "max-age=1, stale-if-error=600", "ETag": '"v1"'}
    origin.static(SEGMENT, BODY, headers=fields)
    origin.static(other, BODY[::-1], headers={"Cache-Control": "max-age=60"})
    node = await Node(node_config([origin.url], memory_bytes=1500), clock=clock).start()
    release = asyncio.Event()

    async def revalidation(request: web.Request) -> web.Response:
        await release.wait()
        if answer == "304":
            return web.Response(status=304, headers=origin.fields({"ETag": '"v1"'}))
        return web.Response(status=500, text="broken\n")

    try:
        await get(http, node)
        clock.advance(5)
        origin.route(SEGMENT, revalidation)
        waiting = asyncio.create_task(get(http, node))
        await wait_for(lambda: origin.count(SEGMENT) == 2)
        assert await get(http, node, other) == (200, BODY[::-1])  # evicts the stale copy
        assert node.runner.node.stats.evictions == 1
        origin.static(SEGMENT, BODY, headers=fields)
        release.set()
        status, body = await asyncio.wait_for(waiting, 5)
        assert node.runner.open_requests == 0
        if answer == "304":
            assert (status, body) == (200, BODY)  # fetched again in full
        else:
            assert status == 500  # the stale copy is gone: nothing to serve on error
    finally:
        await node.stop()
        await origin.stop()


async def test_clients_that_leave_before_the_answer(
    node: Node, origin: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(body=BIG, headers={"Cache-Control": "max-age=60"})

    origin.route(SEGMENT, held)
    leavers = [
        asyncio.create_task(
            raw_exchange(
                node.url, b"GET " + SEGMENT.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", timeout=0.2
            )
        )
        for _ in range(3)
    ]
    await asyncio.gather(*leavers)  # each closed its connection after 0.2 s, unanswered
    stayer = asyncio.create_task(_concurrent_gets(node, 1))
    await wait_for(lambda: node.runner.node.stats.coalesced_waiters == 3)
    release.set()
    assert await stayer == [(200, BIG)]
    await wait_for(lambda: node.runner.open_requests == 0)
    assert await _concurrent_gets(node, 1) == [(200, BIG)]
    assert origin.count() == 1
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_client_that_leaves_a_passed_request(
    node: Node, origin: Upstream, http: aiohttp.ClientSession, method: str
) -> None:
    """A request passed through (a private object's, or an unsafe method) whose client leaves
    before the upstream answers: the answer goes nowhere, nothing breaks, and a POST's
    invalidation still happens (the upstream did process it)."""
    release = asyncio.Event()
    first_get = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.method == "GET" and not first_get.is_set():
            first_get.set()
            # GET case: private, so the key is passed through from now on.
            cache_control = "private" if method == "GET" else "max-age=60"
            return web.Response(body=BODY, headers={"Cache-Control": cache_control})
        if request.method == "GET" and method == "POST":
            return web.Response(body=b"new", headers={"Cache-Control": "max-age=60"})
        await release.wait()
        return web.Response(status=200, body=b"late", headers={"Cache-Control": "private"})

    origin.route(SEGMENT, handler)
    assert await get(http, node) == (200, BODY)
    request = f"{method} {SEGMENT} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    await raw_exchange(node.url, request.encode(), timeout=0.1)  # leaves unanswered
    await wait_for(lambda: node.runner.open_requests == 0)  # the node noticed
    release.set()
    await wait_for(lambda: node.runner.open_fetches == 0)
    async with http.get(node.url + "/healthz") as response:
        assert response.status == 200
    if method == "POST":
        assert await get(http, node) == (200, b"new")  # the POST invalidated the stored copy
    assert [seen.method for seen in origin.requests()] == (
        ["GET", "GET"] if method == "GET" else ["GET", "POST", "GET"]
    )


async def test_an_unsafe_request_whose_client_left_is_not_resent_without_its_body(
    http: aiohttp.ClientSession,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    parent = await RawUpstream(silent).start()
    origin = await Upstream().start()
    origin.static(SEGMENT, b"", status=204)
    node = await Node(node_config([parent.url], origin=origin.url, upstream_timeout=1.0)).start()
    try:
        request = f"PUT {SEGMENT} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\ndata"
        await raw_exchange(node.url, request.encode(), timeout=0.1)  # leaves unanswered
        await wait_for(lambda: parent.requests(SEGMENT) == 1)
        await asyncio.sleep(1.5)  # the parent times out; the node would try the origin next
        # Never a PUT with an empty body in place of the client's (it would replace content
        # with nothing); with the client gone, there is nobody to retry for.
        assert [(seen.method, seen.body) for seen in origin.requests()] in ([], [("PUT", b"data")])
        assert node.runner.open_fetches == 0 and node.runner.open_requests == 0
    finally:
        await node.stop()
        await origin.stop()
        await parent.stop()
