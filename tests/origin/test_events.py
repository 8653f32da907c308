"""The events API on a real origin (aiohttp on 127.0.0.1), its logs, and the viral loop with a
real edge node: a burst of plays makes a video trending, the edge is hinted and pre-warms it."""

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from core.config import EventsConfig, OriginConfig, UploadsConfig
from origin.app import make_origin_app
from origin.events import EVENTS, EventService
from origin.store.fs import FilesystemStore
from origin.uploads import install_uploads
from tests.edge.harness import (
    Node,
    Served,
    cache_status_members,
    client_session,
    closed_port_url,
    node_config,
    parse_metrics,
    wait_for,
)
from tests.edge.test_tiers import RUNGS, publish

HINT_TOKEN = "hint-secret"
NOW = time.time()


def play(video: str, user: str = "u1", **extra: Any) -> dict[str, Any]:
    return {"type": "play_start", "user": user, "video": video, "ts": NOW, **extra}


class Origin:
    def __init__(self, root: Path, **events: Any) -> None:
        self.root = root
        self.store = FilesystemStore(root / "store")
        self.events = EventsConfig(**events)
        uploads = UploadsConfig(
            catalog_path=str(root / "catalog.sqlite"),
            staging_path=str(root / "uploads"),
            tokens=["alice:alice-token"],
            workers=0,
        )

        def factory() -> web.Application:
            app = make_origin_app(self.store, OriginConfig())
            install_uploads(app, self.store, uploads, root, self.events)
            return app

        self.served = Served(factory)

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def service(self) -> EventService:
        assert self.served.app is not None
        return self.served.app[EVENTS]

    def logged(self) -> list[dict[str, Any]]:
        path = self.root / "events" / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Origin] = []

    async def start(**events: Any) -> Origin:
        origin = Origin(tmp_path, **events)
        await origin.served.start()
        started.append(origin)
        return origin

    yield start
    for origin in started:
        await origin.served.stop()
        origin.store.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with client_session(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def post(
    http: aiohttp.ClientSession, origin: Origin, batch: object, **headers: str
) -> tuple[int, str]:
    body = batch if isinstance(batch, bytes) else json.dumps(batch).encode()
    async with http.post(origin.url + "/api/events", data=body, headers=headers) as response:
        return response.status, await response.text()


async def test_a_valid_batch_is_acknowledged_and_logged(
    running: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    origin = await running()
    batch = [
        {"type": "impression", "user": "u1", "video": "v1", "ts": NOW, "device": "phone"},
        play("v1", region="eu"),
        {"type": "watch_time", "user": "u1", "video": "v1", "ts": NOW, "seconds": 7.5},
        {"type": "completion", "user": "u1", "video": "v1", "ts": NOW},
        {"type": "skip", "user": "u1", "video": "v2", "ts": NOW},
        {"type": "share", "user": "u1", "video": "v1", "ts": NOW},
        {"type": "comment", "user": "u1", "video": "v1", "ts": NOW},
    ]
    assert await post(http, origin, batch) == (202, '{"accepted": 7}')
    await wait_for(lambda: origin.service.buffer.logged == 7)
    logged = origin.logged()
    assert [{k: v for k, v in e.items() if k != "received"} for e in logged] == batch
    assert all(e["received"] >= NOW for e in logged)


async def test_likes_and_follows_are_readable_when_acknowledged(
    running: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    origin = await running()
    batch = [
        {"type": "like", "user": "u1", "video": "v1", "ts": NOW},
        {"type": "like", "user": "u1", "video": "v1", "ts": NOW},  # once is enough
        {"type": "follow", "user": "u1", "creator": "alice", "ts": NOW},
    ]
    assert (await post(http, origin, batch))[0] == 202
    # No waiting: the write happened before the 202.
    assert origin.service.social.likes_of("u1") == ["v1"]
    assert origin.service.social.follows_of("u1") == ["alice"]


@pytest.mark.parametrize(
    ("batch", "problem"),
    [
        (b"not json", "not JSON"),
        ([], "non-empty JSON array"),
        ({"type": "like"}, "non-empty JSON array"),
        ([play("v1"), {**play("v1"), "type": "dance"}], "event 1: type must be one of"),
        ([{"type": "like", "user": "u1", "video": "v1", "ts": NOW}, play("-/")], "event 1: video"),
        ([{**play("v1"), "extra": 1}], "event 0: unknown field extra"),
        ([{"type": "follow", "user": "u1", "ts": NOW}], "event 0: missing creator"),
        ([{"type": "watch_time", "user": "u", "video": "v", "ts": NOW}], "missing seconds"),
        ([{**play("v1"), "type": "watch_time", "seconds": -1}], "seconds must be"),
        ([play("../etc")], "video must be"),
        ([{**play("v1"), "ts": True}], "ts must be"),
        ([play("v1", region="")], "region must be"),
        ([play("v1")] * 11, "11 events, more than 10"),
    ],
)
async def test_a_bad_batch_is_refused_whole(
    running: Callable[..., Any], http: aiohttp.ClientSession, batch: object, problem: str
) -> None:
    origin = await running(max_batch=10)
    status, text = await post(http, origin, batch)
    assert status == 400
    assert problem in text
    assert origin.service.social.likes_of("u1") == []
    assert len(origin.service.buffer) == 0
    assert origin.service.buffer.logged == 0


async def test_limits_tokens_and_a_full_buffer(
    running: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    origin = await running(buffer_events=2, max_body_bytes=1024)
    assert (await post(http, origin, [play("v", user="u" * 60)] * 20))[0] == 413
    async with http.post(origin.url + "/api/events", data=json.dumps([play("v")] * 3)) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
    assert (await post(http, origin, [play("v")], Authorization="Bearer nope"))[0] == 401
    alice = {"Authorization": "Bearer alice-token"}
    assert (await post(http, origin, [play("v", user="bob")], **alice))[0] == 403
    assert (await post(http, origin, [play("v", user="alice")], **alice))[0] == 202


async def test_redis_streams_are_partitioned_by_user(
    running: Callable[..., Any], http: aiohttp.ClientSession, redis_url: str
) -> None:
    prefix = f"test-events-{time.monotonic_ns()}:"
    origin = await running(redis_url=redis_url, redis_prefix=prefix, partitions=4)
    users = [f"user{n}" for n in range(12)]
    assert (await post(http, origin, [play("v", user=u) for u in users] * 2))[0] == 202
    await wait_for(lambda: origin.service.buffer.logged == 24)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        seen: dict[str, list[str]] = {}
        for partition in range(4):
            entries: Any = await client.xrange(f"{prefix}{partition}")
            for _, fields in entries:
                user = json.loads(fields["event"])["user"]
                seen.setdefault(user, []).append(str(partition))
    finally:
        await client.aclose()
    assert sorted(seen) == sorted(users)
    # Each user's events are all in one stream, in order.
    assert all(len(set(parts)) == 1 and len(parts) == 2 for parts in seen.values())
    assert len({parts[0] for parts in seen.values()}) > 1


async def test_a_burst_trends_and_the_edge_prewarms_for_the_first_viewer(
    running: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    edge_port = int(closed_port_url().rsplit(":", 1)[1])
    origin = await running(hint_nodes=[f"http://127.0.0.1:{edge_port}"], hint_token=HINT_TOKEN)
    edge = Node(node_config([origin.url], admission="viral"), name="edge-1", port=edge_port)
    await edge.start()
    try:
        publish(origin.store, "abc")
        assert (await post(http, origin, [play("abc", user=f"u{n}") for n in range(5)]))[0] == 202
        async with http.get(origin.url + "/api/trending") as response:
            assert (await response.json())["videos"] == []
        started = time.monotonic()
        burst = [play("abc", user=f"b{n}", region="eu") for n in range(40)]
        assert (await post(http, origin, burst))[0] == 202
        async with http.get(origin.url + "/api/trending?region=eu") as response:
            listed = await response.json()
        assert listed["region"] == "eu"
        assert [item["video"] for item in listed["videos"]] == ["abc"]

        def prewarmed() -> bool:
            # Every rung's init and first segment (playlists are read, not kept).
            return edge.runner.node.stored_objects >= 2 * len(RUNGS)

        await wait_for(prewarmed, timeout=10.0)
        await wait_for(lambda: edge.runner.open_fetches == 0)
        elapsed = time.monotonic() - started
        assert elapsed < 10.0
        assert origin.service.hints.sent == 1
        async with http.get(edge.url + "/metrics") as response:
            metrics = parse_metrics(await response.text())
        assert metrics["shoal_admission_trending_videos"] == 1
        assert metrics["shoal_cache_objects"] == 2 * len(RUNGS)
        assert sum(v for k, v in metrics.items() if k.startswith("shoal_cache_hits")) == 0
        # The first viewer after the burst: its first segment is already at the edge.
        async with http.get(edge.url + "/v/abc/360p/seg_00000.m4s") as response:
            assert response.status == 200
            await response.read()
            members = cache_status_members(response.headers["Cache-Status"])
        assert members[-1][:2] == ["edge-1", "hit"]
    finally:
        await edge.stop()
