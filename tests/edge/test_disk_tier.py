"""The disk tier under a real node: demoted objects survive a restart, and a damaged record is
refetched instead of served."""

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer

from core.config import CacheNodeConfig
from edge.app import make_cache_app
from edge.disk import DiskTier

BODY_BYTES = 200_000
SEEN = web.AppKey("seen", Counter[str])


async def _segment(request: web.Request) -> web.Response:
    request.app[SEEN][request.path] += 1
    marker = request.path.encode()
    body = (marker * (BODY_BYTES // len(marker) + 1))[:BODY_BYTES]
    return web.Response(body=body, headers={"Cache-Control": "max-age=3600", "ETag": '"x"'})


def expected(path: str) -> bytes:
    marker = path.encode()
    return (marker * (BODY_BYTES // len(marker) + 1))[:BODY_BYTES]


@pytest.fixture
async def origin() -> AsyncIterator[tuple[str, Counter[str]]]:
    """The origin's base URL and how often each path was asked for."""
    app = web.Application()
    app[SEEN] = Counter()
    app.router.add_get("/{tail:.*}", _segment)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/"), app[SEEN]


def node_config(origin: tuple[str, Counter[str]], disk: Path) -> CacheNodeConfig:
    return CacheNodeConfig(
        upstreams=[origin[0]],
        admission="always",
        eviction="lru",
        memory_bytes=int(BODY_BYTES * 1.5),  # one object in memory at a time
        disk_bytes=BODY_BYTES * 20,
        disk_path=str(disk),
    )


async def get(server: BaseTestServer, path: str) -> tuple[bytes, str]:
    async with aiohttp.ClientSession() as session, session.get(server.make_url(path)) as response:
        assert response.status == 200
        return await response.read(), response.headers["Cache-Status"]


PATHS = [f"/v/vid{i}/360p/seg_00001.m4s" for i in range(3)]


async def test_demoted_objects_survive_a_restart(
    origin: tuple[str, Counter[str]], tmp_path: Path
) -> None:
    config = node_config(origin, tmp_path / "disk")
    async with TestServer(make_cache_app(config, tier="edge", name="edge-d")) as first:
        for path in PATHS:
            body, _ = await get(first, path)
            assert body == expected(path)
        body, status = await get(first, PATHS[0])  # from disk, promoted back to memory
        assert body == expected(PATHS[0]) and "edge-d; hit" in status
        async with (
            aiohttp.ClientSession() as session,
            session.get(first.make_url("/metrics")) as response,
        ):
            metrics = await response.text()
        # Three objects, one in memory: 2 demotions to fit 3 in, then 1 more for the promotion.
        assert "shoal_disk_demotions_total 3.0" in metrics
        assert "shoal_disk_promotions_total 1.0" in metrics
        assert "shoal_disk_objects 2.0" in metrics and "shoal_cache_objects 3.0" in metrics
    assert len(list(DiskTier(tmp_path / "disk").scan())) == len(PATHS)
    async with TestServer(make_cache_app(config, tier="edge", name="edge-d")) as second:
        # Also the object that was in memory at shutdown: stopping demoted it.
        for path in PATHS:
            body, status = await get(second, path)
            assert body == expected(path) and "edge-d; hit" in status
    assert all(origin[1][path] == 1 for path in PATHS)


async def test_a_truncated_record_is_refetched(
    origin: tuple[str, Counter[str]], tmp_path: Path
) -> None:
    config = node_config(origin, tmp_path / "disk")
    async with TestServer(make_cache_app(config, tier="edge", name="edge-d")) as first:
        for path in PATHS[:2]:
            await get(first, path)
    async with TestServer(make_cache_app(config, tier="edge", name="edge-d")) as second:
        record = next(r for r in DiskTier(tmp_path / "disk").scan() if PATHS[0] in r.object_id)
        with open(record.path, "r+b") as file:
            file.truncate(record.body_offset + 1000)
        body, status = await get(second, PATHS[0])
        assert body == expected(PATHS[0])  # never the damaged bytes
        assert "fwd=uri-miss" in status
    assert origin[1][PATHS[0]] == 2
