"""The disk tier under a real node: demoted objects survive a restart, a damaged record is
refetched instead of served, and disk hits go from the record to the socket (sendfile)."""

import asyncio
import contextlib
import os
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
from tests.edge.harness import Node, Upstream
from tests.edge.harness import client_session as harness_session
from tests.edge.harness import node_config as harness_config

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
        for _ in range(2):  # from disk; the second disk hit promotes it back to memory
            body, status = await get(first, PATHS[0])
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


# ---- disk hits on the lean HTTP/1.1 listener: sent from the record with sendfile ---------------

BIG = "/v/big/360p/seg_00001.m4s"
BIG_BODY = os.urandom(6 * 1024 * 1024)
"""More than a loopback socket takes at once: the rest goes through the transport."""


def open_records(disk: Path) -> list[str]:
    """The records under `disk` this process holds open (not the temporary files of writes)."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            held.append(str(fd.readlink()))
    return [name for name in held if name.startswith(str(disk)) and name.endswith(".rec")]


async def written(disk: Path, path: str) -> None:
    """Wait until the record of `path` is on disk (demotions are written in the background)."""
    for _ in range(500):
        if any(path in record.object_id for record in DiskTier(disk).scan()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never reached the disk tier")


async def test_disk_hits_are_sent_from_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent_by_kernel: list[int] = []
    real_sendfile = os.sendfile

    def counting_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        done = real_sendfile(out_fd, in_fd, offset, count)
        sent_by_kernel.append(done)
        return done

    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    upstream = await Upstream().start()
    upstream.static(BIG, BIG_BODY, headers={"Cache-Control": "max-age=3600"})
    for path in PATHS:
        upstream.static(path, expected(path), headers={"Cache-Control": "max-age=3600"})
    config = harness_config(
        [upstream.url],
        memory_bytes=len(BIG_BODY) + BODY_BYTES,
        disk_bytes=len(BIG_BODY) * 4,
        disk_path=str(tmp_path / "disk"),
        disk_promote_hits=3,
    )
    node = await Node(config).start()
    try:
        async with harness_session() as session:
            for path in [BIG, *PATHS]:  # BIG is demoted to disk
                async with session.get(node.url + path) as response:
                    await response.read()
            await written(tmp_path / "disk", BIG)
            async with session.get(node.url + BIG) as response:  # a disk hit, whole
                assert response.status == 200 and await response.read() == BIG_BODY
            headers = {"Range": "bytes=1000-1999"}
            async with session.get(node.url + BIG, headers=headers) as response:
                assert response.status == 206 and await response.read() == BIG_BODY[1000:2000]
            assert node.runner.node.stats.promotions == 0  # both were sent from disk
            async with session.head(node.url + BIG) as response:  # the third promotes
                assert response.headers["Content-Length"] == str(len(BIG_BODY))
            assert node.runner.node.stats.promotions == 1
        # The kernel sent part of each body (the rest went through the transport), and every
        # record opened for an answer was closed.
        assert 0 < sent_by_kernel[0] <= len(BIG_BODY) and sent_by_kernel[-1] == 1000
        assert open_records(tmp_path / "disk") == []
        assert upstream.count(BIG) == 1
    finally:
        await node.stop()
        await upstream.stop()
