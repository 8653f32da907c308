"""HTTP conformance of a cache node on real sockets, written from RFC 9111 (caching), RFC 9110
(semantics), RFC 5861 (stale-while-revalidate, stale-if-error) and RFC 9211 (Cache-Status).

Each test names the section it checks. The node runs behind aiohttp exactly as in production;
its upstream is an origin stub whose handlers send exactly the fields a test is about and count
what they receive. Time is a `FakeClock` shared by the node and the stub (which dates its
responses from it), so freshness is tested by moving the clock, never by sleeping.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from core.http.conditional import http_date
from tests.edge.harness import (
    FakeClock,
    Node,
    RawUpstream,
    Upstream,
    cache_status_members,
    client_session,
    node_config,
    raw_exchange,
    response_head,
    wait_for,
)

NAME = "edge-c"
SEGMENT = "/v/abc/360p/seg_00001.m4s"
BODY = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable
ETAG = '"v1"'


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def cache_status(self) -> list[list[str]]:
        return cache_status_members(self.headers["Cache-Status"])

    @property
    def own_status(self) -> list[str]:
        """This node's Cache-Status member: the last one (RFC 9211 section 2)."""
        member = self.cache_status[-1]
        assert member[0] == NAME, self.headers["Cache-Status"]
        return member

    @property
    def age(self) -> int:
        return int(self.headers["Age"])


class Edge:
    """A cache node in front of the stub, and a client for it."""

    def __init__(self, node: Node, session: aiohttp.ClientSession) -> None:
        self.node = node
        self.session = session

    async def request(
        self,
        method: str,
        target: str = SEGMENT,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> Reply:
        url = URL(self.node.url + target, encoded=True)  # the target exactly as written
        async with self.session.request(
            method, url, headers=headers, data=data, allow_redirects=False
        ) as response:
            body = await response.read()
            return Reply(response.status, response.headers, body)

    async def get(self, target: str = SEGMENT, headers: Mapping[str, str] | None = None) -> Reply:
        return await self.request("GET", target, headers)


EdgeFactory = Callable[..., Awaitable[Edge]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def origin(clock: FakeClock) -> AsyncIterator[Upstream]:
    stub = await Upstream(clock).start()
    yield stub
    await stub.stop()


@pytest.fixture
async def make_edge(origin: Upstream, clock: FakeClock) -> AsyncIterator[EdgeFactory]:
    started: list[Node] = []
    session = client_session()

    async def make(**settings: object) -> Edge:
        node = await Node(node_config([origin.url], **settings), name=NAME, clock=clock).start()
        started.append(node)
        return Edge(node, session)

    yield make
    await session.close()
    for node in started:
        await node.stop()


@pytest.fixture
async def edge(make_edge: EdgeFactory) -> Edge:
    return await make_edge()


def cacheable(max_age: int = 60, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {
        "Cache-Control": f"max-age={max_age}",
        "ETag": ETAG,
        "Content-Type": "video/iso.segment",
        **(extra or {}),
    }


# ---- freshness (RFC 9111 section 4.2) -----------------------------------------------------------


async def test_4_2_1_max_age_fresh_then_stale(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    origin.static(SEGMENT, BODY, headers=cacheable(max_age=10))
    first = await edge.get()
    assert first.status == 200 and first.body == BODY
    clock.advance(9)
    fresh = await edge.get()
    assert fresh.body == BODY and "hit" in fresh.own_status
    assert origin.count() == 1
    clock.advance(2)  # age 11 > max-age 10: stale, so the node must ask the origin again
    stale = await edge.get()
    assert stale.body == BODY and "hit" not in stale.own_status
    assert origin.count() == 2


@pytest.mark.parametrize(
    ("cache_control", "fresh_at", "stale_at"),
    [("max-age=1, s-maxage=100", 50, 101), ("max-age=100, s-maxage=2", 1, 3)],
)
async def test_5_2_2_10_s_maxage_wins_over_max_age_in_a_shared_cache(
    edge: Edge,
    origin: Upstream,
    clock: FakeClock,
    cache_control: str,
    fresh_at: int,
    stale_at: int,
) -> None:
    origin.static(SEGMENT, BODY, headers={"Cache-Control": cache_control, "ETag": ETAG})
    start = clock.now
    await edge.get()
    clock.now = start + fresh_at
    assert "hit" in (await edge.get()).own_status
    clock.now = start + stale_at
    assert "hit" not in (await edge.get()).own_status
    assert origin.count() == 2


async def test_5_3_expires_gives_freshness_relative_to_date(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    start = clock.now

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=BODY, headers=origin.fields({"Expires": http_date(start + 10), "ETag": ETAG})
        )

    origin.route(SEGMENT, handler)
    await edge.get()
    clock.advance(9)
    assert "hit" in (await edge.get()).own_status
    clock.advance(2)
    assert "hit" not in (await edge.get()).own_status
    assert origin.count() == 2


async def test_5_3_an_invalid_expires_is_already_expired(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    origin.static(SEGMENT, BODY, headers={"Expires": "0", "Last-Modified": http_date(0)})
    await edge.get()
    second = await edge.get()
    # Section 5.3: an invalid Expires means "already expired"; and an explicit (if invalid)
    # expiration time forbids a heuristic (4.2.2), even with an ancient Last-Modified.
    assert "hit" not in second.own_status
    assert origin.count() == 2


# ---- age (RFC 9111 sections 4.2.3 and 5.1) ------------------------------------------------------


async def test_5_1_age_on_hits_grows_with_resident_time(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    origin.static(SEGMENT, BODY, headers=cacheable(max_age=60))
    await edge.get()
    assert (await edge.get()).age == 0
    clock.advance(7.5)
    hit = await edge.get()
    assert hit.age == 7  # whole seconds, rounded down
    assert "ttl=52" in hit.own_status  # RFC 9211 section 2.4: remaining freshness
    clock.advance(30)
    assert (await edge.get()).age == 37
    assert origin.count() == 1


async def test_4_2_3_an_upstream_age_is_honoured(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    # The upstream (another cache) already held the response 50 s of its 60 s lifetime.
    origin.static(SEGMENT, BODY, headers=cacheable(60, {"Age": "50"}))
    miss = await edge.get()
    assert miss.age == 50
    clock.advance(5)
    hit = await edge.get()
    assert hit.age == 55 and "hit" in hit.own_status and "ttl=5" in hit.own_status
    clock.advance(6)  # age 61 > 60: stale, although the node itself held it only 11 s
    assert "hit" not in (await edge.get()).own_status
    assert origin.count() == 2


async def test_4_2_3_apparent_age_from_an_old_date_counts(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    # No Age field, but the Date says the response was made 30 s before it arrived.
    origin.static(SEGMENT, BODY, headers=cacheable(40, {"Date": http_date(clock.now - 30)}))
    await edge.get()
    clock.advance(5)
    assert (await edge.get()).age == 35
    clock.advance(6)
    assert "hit" not in (await edge.get()).own_status


# ---- heuristic freshness (RFC 9111 section 4.2.2) -----------------------------------------------


async def test_4_2_2_heuristic_freshness_from_last_modified(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    # Modified 1000 s before its Date, no explicit expiry: 10% of that, 100 s, is fresh.
    origin.static(SEGMENT, BODY, headers={"Last-Modified": http_date(clock.now - 1000)})
    await edge.get()
    clock.advance(99)
    assert "hit" in (await edge.get()).own_status
    clock.advance(2)
    stale = await edge.get()
    assert "hit" not in stale.own_status
    assert origin.count() == 2
    # Revalidated with the stored Last-Modified (section 4.3.1).
    assert origin.requests()[-1].headers["if-modified-since"] == http_date(clock.now - 1101)


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        # Section 4.2.2: only heuristically cacheable status codes (RFC 9110 section 15.1).
        (302, {"Location": "/v/abc/other.m4s"}),
        (307, {"Location": "/v/abc/other.m4s"}),
        # no-cache: stored, but never used without validation, heuristic or not.
        (200, {"Cache-Control": "no-cache"}),
        # An explicit expiry, even one in the past, rules any heuristic out.
        (200, {"Cache-Control": "max-age=0"}),
    ],
)
async def test_4_2_2_no_heuristic_where_forbidden(
    edge: Edge, origin: Upstream, clock: FakeClock, status: int, headers: dict[str, str]
) -> None:
    origin.static(
        SEGMENT,
        BODY,
        status=status,
        headers={"Last-Modified": http_date(clock.now - 100_000), **headers},
    )
    first = await edge.get()
    assert first.status == status
    clock.advance(1)
    second = await edge.get()
    assert second.status == status
    assert "hit" not in second.own_status
    assert origin.count() == 2


# ---- what is stored (RFC 9111 section 3, 5.2) ---------------------------------------------------


@pytest.mark.parametrize(
    "cache_control", ["no-store", "private", "private, max-age=60", "no-store, max-age=60"]
)
async def test_5_2_2_5_and_5_2_2_7_no_store_and_private_are_not_stored(
    edge: Edge, origin: Upstream, cache_control: str
) -> None:
    origin.static(SEGMENT, BODY, headers={"Cache-Control": cache_control, "ETag": ETAG})
    for _ in range(3):
        reply = await edge.get()
        assert reply.status == 200 and reply.body == BODY
        assert "hit" not in reply.own_status and "stored" not in reply.own_status
    assert origin.count() == 3
    # Nothing was sent conditionally: nothing was stored to validate.
    assert all("if-none-match" not in seen.headers for seen in origin.requests())


async def test_5_2_1_5_request_no_store_keeps_the_response_out_of_the_cache(
    edge: Edge, origin: Upstream
) -> None:
    origin.static(SEGMENT, BODY, headers=cacheable())
    reply = await edge.get(headers={"Cache-Control": "no-store"})
    assert reply.status == 200 and "stored" not in reply.own_status
    await edge.get()
    assert origin.count() == 2


async def test_5_2_2_4_no_cache_is_stored_but_always_revalidated(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    async def handler(request: web.Request) -> web.Response:
        fields = origin.fields({"Cache-Control": "no-cache, max-age=600", "ETag": ETAG})
        if request.headers.get("If-None-Match") == ETAG:
            return web.Response(status=304, headers=fields)
        return web.Response(body=BODY, headers=fields)

    origin.route(SEGMENT, handler)
    first = await edge.get()
    assert "stored" in first.own_status
    for _ in range(2):
        again = await edge.get()
        assert again.status == 200 and again.body == BODY
        assert again.own_status[1:3] == ["fwd=stale", "fwd-status=304"]
    assert origin.count() == 3
    assert [seen.headers.get("if-none-match") for seen in origin.requests()] == [None, ETAG, ETAG]


# ---- Vary (RFC 9111 section 4.1) ----------------------------------------------------------------


async def test_4_1_vary_keeps_one_variant_per_accept_encoding(edge: Edge, origin: Upstream) -> None:
    async def handler(request: web.Request) -> web.Response:
        gzip = "gzip" in request.headers.get("Accept-Encoding", "")
        fields = {"Cache-Control": "max-age=60", "Vary": "Accept-Encoding"}
        if gzip:
            fields["Content-Encoding"] = "gzip"
        return web.Response(body=b"GZIPPED" if gzip else b"PLAIN", headers=origin.fields(fields))

    origin.route(SEGMENT, handler)
    gzip, plain = {"Accept-Encoding": "gzip"}, {"Accept-Encoding": "identity"}
    assert (await edge.get(headers=gzip)).body == b"GZIPPED"
    assert (await edge.get(headers=plain)).body == b"PLAIN"
    assert origin.count() == 2
    for headers, body in (
        (gzip, b"GZIPPED"),
        (plain, b"PLAIN"),
        ({"Accept-Encoding": " GZIP "}, b"GZIPPED"),
    ):
        reply = await edge.get(headers=headers)
        assert reply.body == body and "hit" in reply.own_status
    assert origin.count() == 2
    # Absent only matches absent: a third variant.
    assert (await edge.get()).body == b"PLAIN"
    assert origin.count() == 3


async def test_4_1_vary_star_is_never_served_from_cache(edge: Edge, origin: Upstream) -> None:
    origin.static(SEGMENT, BODY, headers={"Cache-Control": "max-age=60", "Vary": "*"})
    for _ in range(3):
        reply = await edge.get()
        assert reply.status == 200 and "hit" not in reply.own_status
    assert origin.count() == 3


# ---- validation (RFC 9111 section 4.3) ----------------------------------------------------------


async def test_4_3_revalidation_sends_validators_and_a_304_freshens_the_stored_headers(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    last_modified = http_date(clock.now - 3600)
    version = {"n": 1}

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == ETAG:
            # The 304 brings a new lifetime and a new field value (section 3.2).
            return web.Response(
                status=304,
                headers=origin.fields(
                    {"Cache-Control": "max-age=100", "ETag": ETAG, "X-Version": "2"}
                ),
            )
        return web.Response(
            body=BODY,
            headers=origin.fields(
                {
                    "Cache-Control": "max-age=5",
                    "ETag": ETAG,
                    "Last-Modified": last_modified,
                    "X-Version": str(version["n"]),
                }
            ),
        )

    origin.route(SEGMENT, handler)
    await edge.get()
    clock.advance(6)
    revalidated = await edge.get()
    assert revalidated.status == 200 and revalidated.body == BODY
    assert revalidated.own_status[1:3] == ["fwd=stale", "fwd-status=304"]
    conditional = origin.requests()[-1]
    assert conditional.headers["if-none-match"] == ETAG
    assert conditional.headers["if-modified-since"] == last_modified
    assert "range" not in conditional.headers
    assert revalidated.headers["X-Version"] == "2"
    assert revalidated.headers["Cache-Control"] == "max-age=100"
    # The freshened response ages from the 304 and has the new lifetime: fresh for 100 s more.
    clock.advance(90)
    hit = await edge.get()
    assert "hit" in hit.own_status
    assert hit.age == 90
    assert hit.headers["Cache-Control"] == "max-age=100" and hit.headers["X-Version"] == "2"
    assert hit.headers["Last-Modified"] == last_modified
    assert origin.count() == 2


async def test_4_3_a_200_to_a_revalidation_replaces_the_stored_response(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    origin.static(SEGMENT, b"old", headers=cacheable(max_age=5))
    await edge.get()
    origin.static(SEGMENT, b"new", headers=cacheable(5, {"ETag": '"v2"'}))
    clock.advance(6)
    assert (await edge.get()).body == b"new"
    hit = await edge.get()
    assert hit.body == b"new" and hit.headers["ETag"] == '"v2"' and "hit" in hit.own_status


async def test_5_2_2_2_must_revalidate_is_never_served_stale(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    origin.static(
        SEGMENT,
        BODY,
        headers={"Cache-Control": "max-age=1, must-revalidate, stale-if-error=600", "ETag": ETAG},
    )
    await edge.get()
    clock.advance(2)
    origin.static(SEGMENT, b"oops\n", status=500)
    failed = await edge.get()
    assert failed.status == 500 and failed.body == b"oops\n"
    await origin.stop()
    down = await edge.get()
    # Section 5.2.2.2: "the cache MUST generate an error response rather than reuse the stale
    # response ... (504 (Gateway Timeout) is appropriate)".
    assert down.status == 504
    assert down.body != BODY


# ---- RFC 5861 -----------------------------------------------------------------------------------


async def test_rfc5861_3_stale_while_revalidate_serves_stale_at_once_and_revalidates_once(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        fields = origin.fields(
            {"Cache-Control": "max-age=2, stale-while-revalidate=30", "ETag": ETAG}
        )
        if request.headers.get("If-None-Match") == ETAG:
            await release.wait()  # the revalidation hangs until the test has seen the answers
            return web.Response(status=304, headers=fields)
        return web.Response(body=BODY, headers=fields)

    origin.route(SEGMENT, handler)
    await edge.get()
    clock.advance(5)
    for expected_age in (5, 5, 5):
        stale = await asyncio.wait_for(edge.get(), 2)  # answered while the revalidation hangs
        assert stale.status == 200 and stale.body == BODY and stale.age == expected_age
        assert "hit" in stale.own_status and "ttl=-3" in stale.own_status
    await wait_for(lambda: origin.count() == 2)
    release.set()
    # The background revalidation freshened the stored response: fresh again, aged from the 304.
    await wait_for(lambda: edge.node.runner.node.stats.stale_served == 3)
    await asyncio.sleep(0.05)
    fresh = await edge.get()
    assert "hit" in fresh.own_status and fresh.age == 0
    assert origin.count() == 2
    assert origin.requests()[1].headers["if-none-match"] == ETAG


async def test_rfc5861_4_stale_if_error_within_the_window_only(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    origin.static(
        SEGMENT, BODY, headers={"Cache-Control": "max-age=2, stale-if-error=10", "ETag": ETAG}
    )
    await edge.get()
    clock.advance(4)
    origin.static(SEGMENT, b"broken\n", status=500)
    on_500 = await edge.get()
    assert on_500.status == 200 and on_500.body == BODY
    assert "detail=stale-if-error" in on_500.own_status
    await origin.stop()
    clock.advance(4)  # 8 s old: 6 s stale, within the 10 s window
    on_down = await edge.get()
    assert on_down.status == 200 and on_down.body == BODY and on_down.age == 8
    clock.advance(5)  # 13 s old: 11 s stale, past the window
    after = await edge.get()
    # Section 4.2.4: a stale response it may not serve and cannot validate becomes a 504.
    assert after.status == 504 and after.body != BODY


async def test_rfc5861_4_stale_if_error_ends_with_the_window_when_the_origin_answers_500(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    origin.static(
        SEGMENT, BODY, headers={"Cache-Control": "max-age=2, stale-if-error=10", "ETag": ETAG}
    )
    await edge.get()
    origin.static(SEGMENT, b"broken\n", status=500)
    clock.advance(13)
    after = await edge.get()
    assert after.status == 500 and after.body == b"broken\n"


async def test_a_transient_5xx_does_not_stop_caching_of_the_key(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    # A 5xx is not stored (RFC 9111 section 3), but it says nothing about whether the object can
    # be shared: once the origin recovers, the next response is stored and coalesced as usual.
    origin.static(SEGMENT, b"unavailable\n", status=503, headers={"Retry-After": "1"})
    assert (await edge.get()).status == 503
    origin.static(SEGMENT, BODY, headers=cacheable())
    recovered = await edge.get()
    assert recovered.status == 200 and "stored" in recovered.own_status
    assert "hit" in (await edge.get()).own_status
    assert origin.count() == 2


# ---- negative caching ---------------------------------------------------------------------------


async def test_404_is_cached_for_negative_ttl(
    make_edge: EdgeFactory, origin: Upstream, clock: FakeClock
) -> None:
    edge = await make_edge(negative_ttl=5.0)
    missing = "/v/abc/360p/seg_09999.m4s"
    first = await edge.get(missing)
    assert first.status == 404 and "stored" in first.own_status
    clock.advance(4)
    again = await edge.get(missing)
    assert again.status == 404 and "hit" in again.own_status and again.age == 4
    assert origin.count() == 1
    clock.advance(2)
    assert (await edge.get(missing)).status == 404
    assert origin.count() == 2


async def test_404_with_explicit_freshness_keeps_it(
    make_edge: EdgeFactory, origin: Upstream, clock: FakeClock
) -> None:
    edge = await make_edge(negative_ttl=60.0)
    origin.static(SEGMENT, b"gone\n", status=404, headers={"Cache-Control": "max-age=1"})
    await edge.get()
    clock.advance(2)  # the origin's own lifetime wins over the configured negative TTL
    assert "hit" not in (await edge.get()).own_status
    assert origin.count() == 2


# ---- invalidation (RFC 9111 section 4.4) --------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_4_4_unsafe_methods_are_forwarded_and_invalidate(
    edge: Edge, origin: Upstream, method: str
) -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.Response(body=BODY, headers=origin.fields(cacheable()))
        return web.Response(status=201 if method != "DELETE" else 204, headers=origin.fields())

    origin.route(SEGMENT, handler)
    await edge.get()
    assert "hit" in (await edge.get()).own_status
    reply = await edge.request(method, data=b"new content", headers={"Content-Type": "text/plain"})
    assert reply.status in (201, 204)
    assert reply.own_status[1] == "fwd=bypass"
    unsafe = origin.requests()[-1]
    assert unsafe.method == method
    assert unsafe.body == b"new content"
    assert unsafe.headers["content-type"] == "text/plain"
    assert unsafe.headers["content-length"] == str(len(b"new content"))
    after = await edge.get()
    assert "hit" not in after.own_status and after.body == BODY
    assert [seen.method for seen in origin.requests()] == ["GET", method, "GET"]


async def test_4_4_an_error_response_to_an_unsafe_method_invalidates_nothing(
    edge: Edge, origin: Upstream
) -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.Response(body=BODY, headers=origin.fields(cacheable()))
        return web.Response(status=403, text="no\n")

    origin.route(SEGMENT, handler)
    await edge.get()
    assert (await edge.request("POST", data=b"x")).status == 403
    assert "hit" in (await edge.get()).own_status


async def test_4_4_location_of_the_same_origin_is_invalidated_too(
    edge: Edge, origin: Upstream
) -> None:
    other = "/v/abc/360p/index.m3u8"
    origin.static(other, b"#EXTM3U\n", headers=cacheable())

    async def handler(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.Response(body=BODY, headers=origin.fields(cacheable()))
        return web.Response(status=200, headers=origin.fields({"Location": "index.m3u8"}))

    origin.route(SEGMENT, handler)
    await edge.get(other)
    assert "hit" in (await edge.get(other)).own_status
    await edge.request("POST", data=b"x")
    assert "hit" not in (await edge.get(other)).own_status


# ---- client requests answered from the cache (RFC 9110 sections 9.3.2, 13, 14) -----------------


async def _stored(edge: Edge, origin: Upstream, clock: FakeClock) -> str:
    last_modified = http_date(clock.now - 3600)
    origin.static(SEGMENT, BODY, headers=cacheable(extra={"Last-Modified": last_modified}))
    assert (await edge.get()).status == 200
    return last_modified


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"If-None-Match": ETAG}, 304),
        ({"If-None-Match": 'W/"v1"'}, 304),  # weak comparison (RFC 9110 section 13.1.2)
        ({"If-None-Match": '"v0", "v1"'}, 304),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"v0"'}, 200),
        ({"If-Match": ETAG}, 200),
        ({"If-Match": '"v0"'}, 412),
        ({"If-Match": 'W/"v1"'}, 412),  # If-Match compares strongly (13.1.1)
        ({"If-Unmodified-Since": http_date(0)}, 412),
    ],
)
async def test_rfc9110_13_client_preconditions_against_a_cached_object(
    edge: Edge, origin: Upstream, clock: FakeClock, headers: dict[str, str], status: int
) -> None:
    await _stored(edge, origin, clock)
    reply = await edge.get(headers=headers)
    assert reply.status == status
    if status == 304:
        assert reply.body == b"" and reply.headers["ETag"] == ETAG
        assert "Content-Length" not in reply.headers or reply.headers["Content-Length"] == "0"
        assert reply.headers["Cache-Control"] == "max-age=60"
    elif status == 412:
        assert reply.body == b""
    else:
        assert reply.body == BODY
    assert origin.count() == 1  # answered by the cache, not passed upstream


async def test_rfc9110_13_1_3_if_modified_since_against_a_cached_object(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    last_modified = await _stored(edge, origin, clock)
    assert (await edge.get(headers={"If-Modified-Since": last_modified})).status == 304
    earlier = http_date(clock.now - 7200)
    assert (await edge.get(headers={"If-Modified-Since": earlier})).status == 200
    # If-None-Match wins over If-Modified-Since (section 13.2.2).
    both = {"If-None-Match": '"v0"', "If-Modified-Since": last_modified}
    assert (await edge.get(headers=both)).status == 200
    assert origin.count() == 1


async def test_a_conditional_request_on_a_miss_fills_the_cache_unconditionally(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    origin.static(SEGMENT, BODY, headers=cacheable())
    reply = await edge.get(headers={"If-None-Match": ETAG})
    assert reply.status == 304
    # The node asked for the whole object (with no client conditional) and stored it.
    assert "if-none-match" not in origin.requests()[0].headers
    assert (await edge.get()).body == BODY
    assert origin.count() == 1


@pytest.mark.parametrize(
    ("range_field", "status", "content_range", "expected"),
    [
        ("bytes=10-19", 206, "bytes 10-19/1024", BODY[10:20]),
        ("bytes=1000-", 206, "bytes 1000-1023/1024", BODY[1000:]),
        ("bytes=-24", 206, "bytes 1000-1023/1024", BODY[1000:]),
        ("bytes=1000-99999", 206, "bytes 1000-1023/1024", BODY[1000:]),
        ("bytes=2000-", 416, "bytes */1024", b""),
        ("bytes=2000-3000, 4000-5000", 416, "bytes */1024", b""),
        # Several ranges (core/http/ranges.py): coalesced when they touch or overlap...
        ("bytes=0-9, 5-14", 206, "bytes 0-14/1024", BODY[:15]),
        ("bytes=0-9,10-19", 206, "bytes 0-19/1024", BODY[:20]),
        # ... otherwise the whole representation (no multipart/byteranges)
        ("bytes=0-9, 100-109", 200, None, BODY),
        # ignored: invalid syntax, other units
        ("bytes=9-0", 200, None, BODY),
        ("items=0-9", 200, None, BODY),
    ],
)
async def test_rfc9110_14_range_requests_from_the_cache(
    edge: Edge,
    origin: Upstream,
    clock: FakeClock,
    range_field: str,
    status: int,
    content_range: str | None,
    expected: bytes,
) -> None:
    await _stored(edge, origin, clock)
    reply = await edge.get(headers={"Range": range_field})
    assert reply.status == status
    assert reply.headers.get("Content-Range") == content_range
    assert reply.body == expected
    assert origin.count() == 1


async def test_rfc9110_14_range_on_a_miss_fetches_the_whole_object(
    edge: Edge, origin: Upstream
) -> None:
    origin.static(SEGMENT, BODY, headers=cacheable())
    reply = await edge.get(headers={"Range": "bytes=100-199"})
    assert reply.status == 206 and reply.body == BODY[100:200]
    assert "range" not in origin.requests()[0].headers
    assert (await edge.get()).body == BODY
    assert origin.count() == 1


async def test_rfc9110_13_1_5_if_range_from_the_cache(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    await _stored(edge, origin, clock)
    matching = await edge.get(headers={"Range": "bytes=0-3", "If-Range": ETAG})
    assert matching.status == 206 and matching.body == BODY[:4]
    changed = await edge.get(headers={"Range": "bytes=0-3", "If-Range": '"v0"'})
    assert changed.status == 200 and changed.body == BODY


async def test_rfc9110_9_3_2_head_from_miss_and_hit(edge: Edge, origin: Upstream) -> None:
    origin.static(SEGMENT, BODY, headers=cacheable())
    head_miss = await edge.request("HEAD")
    assert head_miss.status == 200 and head_miss.body == b""
    assert head_miss.headers["Content-Length"] == str(len(BODY))
    # The miss filled the cache with a GET (a stored GET response answers HEAD too).
    assert [seen.method for seen in origin.requests()] == ["GET"]
    get = await edge.get()
    assert get.body == BODY and "hit" in get.own_status
    head_hit = await edge.request("HEAD")
    assert head_hit.body == b""
    for name in ("Content-Length", "Content-Type", "ETag", "Cache-Control"):
        assert head_hit.headers[name] == get.headers[name]
    assert origin.count() == 1


# ---- Cache-Status (RFC 9211) --------------------------------------------------------------------


async def test_rfc9211_cache_status_miss_hit_and_ttl(
    edge: Edge, origin: Upstream, clock: FakeClock
) -> None:
    origin.static(SEGMENT, BODY, headers=cacheable(max_age=60))
    miss = await edge.get()
    assert miss.headers["Cache-Status"] == f"{NAME}; fwd=uri-miss; fwd-status=200; stored"
    clock.advance(10)
    hit = await edge.get()
    assert hit.headers["Cache-Status"] == f"{NAME}; hit; ttl=50"


async def test_rfc9211_2_members_are_appended_after_the_upstreams(
    edge: Edge, origin: Upstream
) -> None:
    origin.static(
        SEGMENT,
        BODY,
        headers=cacheable(extra={"Cache-Status": 'shield; hit; ttl=30, "other node"; hit'}),
    )
    miss = await edge.get()
    assert [member[0] for member in miss.cache_status] == ["shield", '"other node"', NAME]
    hit = await edge.get()
    assert [member[0] for member in hit.cache_status] == ["shield", '"other node"', NAME]
    assert hit.cache_status[-1][1] == "hit"


async def test_rfc9211_2_4_fwd_status_and_not_stored(edge: Edge, origin: Upstream) -> None:
    origin.static(SEGMENT, b"nope\n", status=403)
    reply = await edge.get()
    assert reply.status == 403
    assert reply.own_status == [NAME, "fwd=uri-miss", "fwd-status=403"]


async def test_rfc9211_2_6_collapsed_requests(edge: Edge, origin: Upstream) -> None:
    origin.static(SEGMENT, BODY, headers=cacheable(), delay=0.3)
    replies = await asyncio.gather(*(edge.get() for _ in range(5)))
    assert origin.count() == 1
    assert all(reply.body == BODY for reply in replies)
    collapsed = ["collapsed" in reply.own_status for reply in replies]
    assert collapsed.count(False) == 1 and collapsed.count(True) == 4
    leader = replies[collapsed.index(False)]
    assert leader.own_status == [NAME, "fwd=uri-miss", "fwd-status=200", "stored"]


# ---- request directives (RFC 9111 section 5.2.1) ------------------------------------------------


async def test_5_2_1_7_only_if_cached(edge: Edge, origin: Upstream) -> None:
    origin.static(SEGMENT, BODY, headers=cacheable())
    only = {"Cache-Control": "only-if-cached"}
    miss = await edge.get(headers=only)
    assert miss.status == 504
    assert origin.count() == 0
    await edge.get()
    hit = await edge.get(headers=only)
    assert hit.status == 200 and hit.body == BODY
    assert origin.count() == 1


async def test_5_2_1_4_request_no_cache_forces_revalidation(edge: Edge, origin: Upstream) -> None:
    async def handler(request: web.Request) -> web.Response:
        fields = origin.fields(cacheable())
        if request.headers.get("If-None-Match") == ETAG:
            return web.Response(status=304, headers=fields)
        return web.Response(body=BODY, headers=fields)

    origin.route(SEGMENT, handler)
    await edge.get()
    reply = await edge.get(headers={"Cache-Control": "no-cache"})
    assert reply.status == 200 and reply.body == BODY
    assert origin.requests()[-1].headers["if-none-match"] == ETAG


# ---- message forwarding (RFC 9110 section 7.6) --------------------------------------------------


async def test_rfc9110_7_6_1_hop_by_hop_fields_are_not_forwarded_upstream(
    edge: Edge, origin: Upstream
) -> None:
    origin.static(SEGMENT, BODY, headers=cacheable())
    await edge.get(
        SEGMENT + "?token=x%2Fy",
        headers={
            "Connection": "X-Hop",
            "X-Hop": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Trailer": "X-Checksum",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Proxy-Connection": "keep-alive",
            "X-End-To-End": "kept",
        },
    )
    seen = origin.requests()[0]
    assert seen.target == SEGMENT + "?token=x%2Fy"  # path and query exactly as received
    for name in ("x-hop", "keep-alive", "te", "trailer", "proxy-authorization", "proxy-connection"):
        assert name not in seen.headers, name
    assert seen.headers.get("connection", "keep-alive") == "keep-alive"
    assert seen.headers["x-end-to-end"] == "kept"
    # Section 7.6.3: a gateway sends Via in each request it forwards.
    assert seen.headers["via"] == f"1.1 {NAME}"
    assert seen.headers["host"] == origin.url.removeprefix("http://")


async def test_rfc9110_7_6_3_via_is_appended(edge: Edge, origin: Upstream) -> None:
    origin.static(SEGMENT, BODY, headers=cacheable())
    await edge.get(headers={"Via": "1.1 player-proxy"})
    assert origin.requests()[0].headers["via"] == f"1.1 player-proxy, 1.1 {NAME}"


async def test_rfc9110_7_6_1_hop_by_hop_fields_are_not_forwarded_downstream(
    edge: Edge, origin: Upstream
) -> None:
    origin.static(
        SEGMENT,
        BODY,
        headers=cacheable(
            extra={
                "Connection": "X-Secret",
                "X-Secret": "hop-by-hop",
                "Keep-Alive": "timeout=5",
                "Proxy-Authenticate": 'Basic realm="x"',
                "X-End-To-End": "kept",
            }
        ),
    )
    for _ in range(2):  # the miss, then the hit
        reply = await edge.get()
        assert reply.body == BODY
        for name in ("X-Secret", "Keep-Alive", "Proxy-Authenticate"):
            assert name not in reply.headers, name
        assert reply.headers.get("Connection", "keep-alive") == "keep-alive"
        assert reply.headers["X-End-To-End"] == "kept"
        assert reply.headers["ETag"] == ETAG


async def test_framing_fields_of_the_client_request_are_not_forwarded(
    edge: Edge, origin: Upstream
) -> None:
    """A GET with a body: its Content-Length describes the client's message, not the node's
    upstream request (which has no body); forwarding it would desynchronise the upstream
    connection (the upstream would read the next request as this one's body)."""
    origin.static(SEGMENT, BODY, headers=cacheable())
    other = "/v/abc/360p/seg_00002.m4s"
    origin.static(other, b"other", headers=cacheable())
    first = await edge.request("GET", SEGMENT, data=b"0123456789")
    assert first.status == 200 and first.body == BODY
    assert "content-length" not in origin.requests()[0].headers
    second = await edge.get(other)
    assert second.status == 200 and second.body == b"other"
    assert [seen.target for seen in origin.requests()] == [SEGMENT, other]


async def test_a_server_error_answers_every_coalesced_waiter_with_one_upstream_request(
    edge: Edge, origin: Upstream
) -> None:
    origin.static(SEGMENT, b"unavailable\n", status=503, headers={"Retry-After": "1"}, delay=0.3)
    replies = await asyncio.gather(*(edge.get() for _ in range(20)))
    assert [reply.status for reply in replies] == [503] * 20
    assert all(reply.body == b"unavailable\n" for reply in replies)
    assert origin.count() == 1  # not one request per waiter to an upstream already in trouble


@pytest.mark.parametrize(
    "headers",
    [
        {"Cache-Control": "no-store"},  # section 5.2.1.5: not stored, for this request only
        {"Authorization": "Bearer x"},  # section 3.5: not shared, for this request only
    ],
)
async def test_what_one_request_forbids_does_not_disable_caching_for_the_others(
    edge: Edge, origin: Upstream, headers: dict[str, str]
) -> None:
    origin.static(SEGMENT, BODY, headers=cacheable())
    assert "stored" not in (await edge.get(headers=headers)).own_status
    # The response itself was shareable: the next ordinary request stores it, the one after
    # is a hit. (A client must not be able to make a key pass-only for everyone.)
    assert "stored" in (await edge.get()).own_status
    assert "hit" in (await edge.get()).own_status
    assert origin.count() == 2


async def test_rfc9110_9_3_2_a_head_passed_through_is_not_an_upstream_failure(
    edge: Edge, origin: Upstream
) -> None:
    origin.static(SEGMENT, BODY, headers={"Cache-Control": "private", "ETag": ETAG})
    await edge.get()  # private: the key goes straight to the upstream for a while
    head = await edge.request("HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["Content-Length"] == str(len(BODY))
    assert [seen.method for seen in origin.requests()] == ["GET", "HEAD"]
    # The upstream did nothing wrong: it stays in rotation and the node stays ready.
    assert edge.node.runner.node.stats.upstream_failures == 0
    async with edge.session.get(edge.node.url + "/readyz") as ready:
        assert ready.status == 200


async def test_rfc9110_8_6_a_304_passed_through_may_carry_the_content_length_of_the_200() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = upstream.heads[-1].lower()
        if b"if-none-match" in head:
            writer.write(response_head("304 Not Modified", ETag=ETAG, Content_Length="1024"))
        else:
            writer.write(
                response_head(ETag=ETAG, Content_Length="1024", Cache_Control="private") + BODY
            )
        await writer.drain()

    upstream = await RawUpstream(answer).start()
    node = await Node(node_config([upstream.url]), name=NAME).start()
    try:
        async with client_session() as session:
            edge = Edge(node, session)
            assert (await edge.get()).body == BODY  # private: the key is now passed through
            reply = await edge.get(headers={"If-None-Match": ETAG})
            assert reply.status == 304 and reply.body == b""
            assert node.runner.node.stats.upstream_failures == 0
            assert (await edge.get()).body == BODY  # the connection is still in order
    finally:
        await node.stop()
        await upstream.stop()


@pytest.mark.parametrize(
    "query",
    ["?token=x%2Fy", "?sig=a%2Bb%3D%3D&exp=1", "?q=%zz", "?a=1&a=2&b", '?q="<>{}|^`'],
)
async def test_rfc9110_7_7_the_target_is_forwarded_unmodified(
    edge: Edge, origin: Upstream, query: str
) -> None:
    # Section 7.7: "A proxy MUST NOT modify the absolute-path and query parts of the received
    # target URI when forwarding it". Sent raw, so no client library normalises it first.
    origin.static(SEGMENT, BODY, headers=cacheable())
    request = f"GET {SEGMENT}{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = await raw_exchange(edge.node.url, request.encode())
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert origin.requests()[0].target == SEGMENT + query
