"""The cache tiers together, as `shoal up` wires them: origin -> one regional node -> two edges.

The origin is the real `make_origin_app` over a `FilesystemStore` of small synthetic videos; a
middleware added in front of it counts the requests it receives (and can hold them, to make
concurrent requests truly overlap). Edges have the regional node as their only upstream and the
origin as their fallback; the regional node has the origin as its upstream. Node settings are
the defaults of `ShoalConfig` for each tier, so admission is the production "viral" policy: the
objects fetched through the tiers are startup-critical ones (init and first segments), which
every tier admits.
"""

import asyncio
import dataclasses
import json
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from core.cache.routing import ParentRouter
from core.config import OriginConfig, ShoalConfig
from manifests import (
    MasterPlaylist,
    Variant,
    media_playlist_for_segments,
    render_master,
    render_media,
)
from origin.app import make_origin_app
from origin.store.fs import FilesystemStore
from tests.edge.harness import (
    Node,
    Served,
    Upstream,
    cache_status_members,
    client_session,
    closed_port_url,
    parse_metrics,
    wait_for,
)

RUNGS = ("360p", "540p", "720p")
SEGMENTS = 4
PURGE_TOKEN = "purge-secret"
HINT_TOKEN = "hint-secret"


def segment_bytes(video: str, rung: str, name: str, size: int = 64 * 1024) -> bytes:
    seed = f"{video}/{rung}/{name}".encode()
    return (seed * (size // len(seed) + 1))[:size]


def publish(store: FilesystemStore, video: str) -> None:
    """A video as the ladder publishes it: media playlists, init and segments, master last."""
    for rung in RUNGS:
        media = media_playlist_for_segments([2.0] * SEGMENTS, "seg_{index:05d}.m4s", "init.mp4")
        store.put_bytes(f"videos/{video}/{rung}/index.m3u8", render_media(media).encode())
        store.put_bytes(f"videos/{video}/{rung}/init.mp4", segment_bytes(video, rung, "init", 2048))
        for index in range(SEGMENTS):
            name = f"seg_{index:05d}.m4s"
            store.put_bytes(f"videos/{video}/{rung}/{name}", segment_bytes(video, rung, name))
    master = MasterPlaylist(
        variants=tuple(
            Variant(uri=f"{rung}/index.m3u8", bandwidth=1_000_000 * (i + 1))
            for i, rung in enumerate(RUNGS)
        )
    )
    store.put_bytes(f"videos/{video}/master.m3u8", render_master(master).encode())


class Origin:
    """The real origin app, behind a counting (and optionally holding) middleware."""

    def __init__(self, store: FilesystemStore) -> None:
        self.store = store
        self.seen: Counter[str] = Counter()
        self.hold: Callable[[web.Request], Awaitable[None]] | None = None
        self.served = Served(self._app)

    def _app(self) -> web.Application:
        app = make_origin_app(self.store, OriginConfig())

        @web.middleware
        async def count(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if request.path != "/healthz":
                self.seen[request.path] += 1
                if self.hold is not None:
                    await self.hold(request)
            return await handler(request)

        app.middlewares.insert(0, count)
        return app

    @property
    def url(self) -> str:
        return self.served.url


class Stack:
    def __init__(self, origin: Origin, regional: Node, edges: list[Node]) -> None:
        self.origin = origin
        self.regional = regional
        self.edges = edges

    @property
    def nodes(self) -> list[Node]:
        return [self.regional, *self.edges]


def short_backoff_router(parents: list[str], origin: str | None) -> Callable[[], ParentRouter]:
    """Passive health as configured, but with back-offs short enough for a test to watch."""
    return lambda: ParentRouter(
        parents, origin, backoff_initial=0.2, backoff_max=0.4, probe_interval=0.3
    )


async def start_stack(tmp_path: Path, *, edges: int = 2) -> Stack:
    store = FilesystemStore(tmp_path / "store")
    for video in ("abc", "xyz"):
        publish(store, video)
    origin = Origin(store)
    await origin.served.start()
    defaults = ShoalConfig()
    regional_config = dataclasses.replace(
        defaults.regional, upstreams=[origin.url], purge_token=PURGE_TOKEN, hint_token=HINT_TOKEN
    )
    regional = await Node(regional_config, tier="regional", name="regional-1").start()
    started = []
    for number in range(1, edges + 1):
        edge_config = dataclasses.replace(
            defaults.edge,
            upstreams=[regional.url],
            origin=origin.url,
            connect_timeout=0.5,
            purge_token=PURGE_TOKEN,
            hint_token=HINT_TOKEN,
        )
        node = Node(
            edge_config,
            tier="edge",
            name=f"edge-{number}",
            router=short_backoff_router([regional.url], origin.url),
        )
        started.append(await node.start())
    return Stack(origin, regional, started)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    built = await start_stack(tmp_path)
    yield built
    for node in [*built.edges, built.regional]:
        await node.stop()
    await built.origin.served.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    session = client_session()
    yield session
    await session.close()


async def fetch(
    http: aiohttp.ClientSession, node: Node, path: str
) -> tuple[int, bytes, list[list[str]]]:
    async with http.get(node.url + path) as response:
        body = await response.read()
        return response.status, body, cache_status_members(response.headers["Cache-Status"])


async def metrics(http: aiohttp.ClientSession, node: Node) -> dict[str, float]:
    async with http.get(node.url + "/metrics") as response:
        return parse_metrics(await response.text())


FIRST = "/v/abc/720p/seg_00000.m4s"


async def test_a_segment_through_two_edges_costs_one_origin_request(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    expected = segment_bytes("abc", "720p", "seg_00000.m4s")
    status, body, cache_status = await fetch(http, stack.edges[0], FIRST)
    assert status == 200 and body == expected
    assert [member[:2] for member in cache_status] == [
        ["regional-1", "fwd=uri-miss"],
        ["edge-1", "fwd=uri-miss"],
    ]
    status, body, cache_status = await fetch(http, stack.edges[1], FIRST)
    assert status == 200 and body == expected
    # The regional node answered edge-2 from its cache; edge-2 stored it in turn.
    assert cache_status[0][:2] == ["regional-1", "hit"]
    assert cache_status[1] == ["edge-2", "fwd=uri-miss", "fwd-status=200", "stored"]
    for edge in stack.edges:
        status, body, cache_status = await fetch(http, edge, FIRST)
        assert body == expected and cache_status[-1][:2] == [edge.name, "hit"]
    assert stack.origin.seen[FIRST] == 1


async def test_500_concurrent_requests_for_a_cold_segment_cost_one_request_per_tier(
    stack: Stack,
) -> None:
    path = "/v/xyz/540p/init.mp4"
    expected = segment_bytes("xyz", "540p", "init", 2048)
    total = 500

    async def hold_until_all_arrived(request: web.Request) -> None:
        # The origin answers only once every client request reached an edge: they all overlap.
        await wait_for(
            lambda: (
                sum(sum(edge.runner.node.stats.requests.values()) for edge in stack.edges) >= total
            ),
            timeout=20,
        )

    stack.origin.hold = hold_until_all_arrived

    async def one(session: aiohttp.ClientSession, edge: Node) -> tuple[int, bytes]:
        async with session.get(edge.url + path) as response:
            return response.status, await response.read()

    async with client_session() as session:
        results = await asyncio.gather(*(one(session, stack.edges[i % 2]) for i in range(total)))
    assert Counter(status for status, _ in results) == {200: total}
    assert all(body == expected for _, body in results)
    assert stack.origin.seen[path] == 1
    async with client_session() as session:
        for node in stack.nodes:
            values = await metrics(session, node)
            assert values["shoal_upstream_fetches_total"] == 1, node.name
            assert values.get("shoal_upstream_failures_total", 0) == 0, node.name
        edge_values = [await metrics(session, edge) for edge in stack.edges]
    assert sum(v['shoal_requests_total{kind="init"}'] for v in edge_values) == total
    # Every edge request but each edge's first one waited on that first one's fetch.
    assert sum(v["shoal_coalesced_waiters_total"] for v in edge_values) == total - 2
    regional = stack.regional.runner.node.stats
    assert regional.requests == {"init": 2} and regional.coalesced_waiters == 1


async def test_edges_fail_over_to_the_origin_and_come_back_to_the_regional_node(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    counter = iter(range(1000))

    def next_path() -> str:
        # A new startup-critical object each time, so no answer comes from an edge's cache.
        index = next(counter)
        return f"/v/{('abc', 'xyz')[index % 2]}/{RUNGS[index // 2 % 3]}/seg_00000.m4s?n={index}"

    status, _, cache_status = await fetch(http, stack.edges[0], next_path())
    assert status == 200 and cache_status[0][0] == "regional-1"
    await stack.regional.stop()
    for _ in range(10):
        for edge in stack.edges:
            status, body, cache_status = await fetch(http, edge, next_path())
            assert status == 200 and body  # no client error while the regional node is down
            assert [member[0] for member in cache_status] == [edge.name]  # from the origin
        await asyncio.sleep(0.05)
    async with http.get(stack.edges[0].url + "/readyz") as ready:
        assert ready.status == 200  # the origin fallback keeps the edge ready
    before = stack.origin.seen.total()
    await stack.regional.start()  # same port, cold cache

    async def through_regional(edge: Node) -> bool:
        status, _, cache_status = await fetch(http, edge, next_path())
        assert status == 200
        return cache_status[0][0] == "regional-1"

    for edge in stack.edges:
        async with asyncio.timeout(5):
            while not await through_regional(edge):
                await asyncio.sleep(0.05)
        # Back in rotation: from now on every request goes through the regional node.
        for _ in range(5):
            assert await through_regional(edge)
    assert stack.origin.seen.total() > before
    assert stack.regional.runner.node.stats.upstream_fetches >= 10


async def test_an_edge_fails_over_between_its_parents(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    origin = await Upstream().start()
    try:
        for index in range(8):
            origin.static(
                f"/v/abc/360p/seg_{index:05d}.m4s",
                b"segment %d" % index,
                headers={"Cache-Control": "max-age=60"},
            )
        dead = closed_port_url()
        config = dataclasses.replace(
            ShoalConfig().edge, upstreams=[dead, origin.url], admission="always"
        )
        edge = await Node(config, name="edge-f").start()
        try:
            # Rendezvous hashing puts the dead parent first for some keys: they still succeed.
            for index in range(8):
                status, body, _ = await fetch(http, edge, f"/v/abc/360p/seg_{index:05d}.m4s")
                assert (status, body) == (200, b"segment %d" % index)
            assert origin.count() == 8
        finally:
            await edge.stop()
    finally:
        await origin.stop()


async def test_large_bodies_stream_through_both_tiers_while_they_arrive(
    http: aiohttp.ClientSession,
) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB
    path = "/v/big/720p/seg_00000.m4s"
    release = asyncio.Event()
    origin = await Upstream().start()

    async def slow_origin(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Cache-Control": "max-age=60", "Content-Type": "video/iso.segment"}
        )
        response.content_length = len(big)
        await response.prepare(request)
        await response.write(big[: 256 * 1024])
        await release.wait()  # the rest only once the client has seen the first bytes
        for start in range(256 * 1024, len(big), 256 * 1024):
            await response.write(big[start : start + 256 * 1024])
        return response

    origin.route(path, slow_origin)
    defaults = ShoalConfig()
    regional = await Node(
        dataclasses.replace(defaults.regional, upstreams=[origin.url]),
        tier="regional",
        name="regional-1",
    ).start()
    edge = await Node(
        dataclasses.replace(defaults.edge, upstreams=[regional.url], origin=origin.url),
        name="edge-1",
    ).start()
    try:
        async with http.get(edge.url + path) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(len(big))
            first = await response.content.readexactly(256 * 1024)
            assert first == big[: 256 * 1024]
            release.set()
            assert first + await response.read() == big
        for _ in range(2):  # then from the edge's cache, GET and HEAD
            async with http.get(edge.url + path) as response:
                assert await response.read() == big
            async with http.head(edge.url + path) as response:
                assert response.headers["Content-Length"] == str(len(big))
                assert await response.read() == b""
        assert origin.count() == 1
    finally:
        await edge.stop()
        await regional.stop()
        await origin.stop()


async def test_health_reports_tier_name_and_upstreams(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    async with http.get(stack.edges[0].url + "/healthz") as response:
        assert response.headers["Cache-Control"] == "no-store"
        assert await response.json() == {
            "status": "ok",
            "kind": "edge",
            "name": "edge-1",
            "upstreams": [stack.regional.url],
            "worker": {"index": 0, "of": 1, "pid": os.getpid()},
        }
    async with http.get(stack.regional.url + "/healthz") as response:
        assert (await response.json())["kind"] == "regional"


async def test_trending_hints_prewarm_init_and_first_segment_of_every_rendition(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    edge = stack.edges[0]
    async with http.post(
        edge.url + "/_shoal/trending",
        data=json.dumps({"videos": ["abc"]}),
        headers={"Authorization": f"Bearer {HINT_TOKEN}"},
    ) as response:
        assert response.status == 200
        assert await response.json() == {"accepted": 1}
    wanted = [f"/v/abc/{rung}/{name}" for rung in RUNGS for name in ("init.mp4", "seg_00000.m4s")]
    # The edge read the master and every media playlist, then fetched what a viewer needs first.
    await wait_for(lambda: all(stack.origin.seen[path] == 1 for path in wanted))
    await wait_for(lambda: edge.runner.open_fetches == 0)
    assert stack.origin.seen["/v/abc/master.m3u8"] == 1
    assert all(stack.origin.seen[f"/v/abc/{rung}/index.m3u8"] == 1 for rung in RUNGS)
    assert all(stack.origin.seen[f"/v/abc/{rung}/seg_00001.m4s"] == 0 for rung in RUNGS)
    for path in wanted:
        rung, name = path.split("/")[3:5]
        status, body, cache_status = await fetch(http, edge, path)
        assert status == 200
        assert body == segment_bytes(
            "abc",
            rung,
            "init" if name == "init.mp4" else name,
            2048 if name == "init.mp4" else 64 * 1024,
        )
        assert cache_status[-1][:2] == ["edge-1", "hit"], path
    assert all(stack.origin.seen[path] == 1 for path in wanted)
    # The other edge was not hinted: it asks the regional node, which pre-warmed along the way.
    status, _, cache_status = await fetch(http, stack.edges[1], wanted[0])
    assert cache_status[0][:2] == ["regional-1", "hit"]
