"""`shoal edge` with several workers: one port, connections spread over the workers, metrics of
the whole node, graceful reload (SIGHUP) and stop (SIGTERM) with responses in flight finishing,
and a disk tier that the workers share out."""

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.edge.harness import Upstream, parse_metrics

pytestmark = pytest.mark.slow

SEGMENT = "/v/work/360p/seg_00001.m4s"
SLOW = "/v/work/360p/seg_00002.m4s"
BODY = os.urandom(50_000)


@pytest.fixture
async def origin() -> AsyncIterator[Upstream]:
    stub = await Upstream().start()
    stub.static(SEGMENT, BODY, headers={"Cache-Control": "max-age=600"})
    stub.static(SLOW, BODY, headers={"Cache-Control": "max-age=600"}, delay=1.0)
    for n in range(20):
        stub.static(f"/v/work/360p/obj_{n}.m4s", BODY, headers={"Cache-Control": "max-age=600"})
    yield stub
    await stub.stop()


class Edge:
    def __init__(self, process: asyncio.subprocess.Process, announce: Path) -> None:
        self.process = process
        self.announce = announce

    @property
    def record(self) -> dict[str, object]:
        record: dict[str, object] = json.loads(self.announce.read_text())
        return record

    @property
    def url(self) -> str:
        return str(self.record["url"])

    @property
    def workers(self) -> list[int]:
        pids = self.record["workers"]
        assert isinstance(pids, list)
        return [int(pid) for pid in pids]


@asynccontextmanager
async def edge(
    tmp_path: Path, origin: Upstream, *settings: str, workers: int = 2
) -> AsyncIterator[Edge]:
    announce = tmp_path / "edge.json"
    announce.unlink(missing_ok=True)  # a previous run's
    overrides = [f"edge.workers={workers}", "edge.admission=always", *settings]
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "deploy.cli", "edge", "--port", "0", "--upstream", origin.url),
        *("--announce", str(announce)),
        *[arg for setting in overrides for arg in ("--set", setting)],
    )
    try:
        async with asyncio.timeout(30):
            while not announce.exists():
                assert process.returncode is None, "shoal edge exited"
                await asyncio.sleep(0.05)
        yield Edge(process, announce)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def fresh_get(url: str) -> tuple[int, bytes, dict[str, str]]:
    """A GET on a connection of its own (so the kernel picks a worker for it)."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.get(url) as response,
    ):
        return response.status, await response.read(), dict(response.headers)


async def node_metrics(url: str, until: Callable[[dict[str, float]], bool]) -> dict[str, float]:
    """The node's merged metrics once `until` holds of them (snapshots lag by up to a second;
    on a loaded machine, more): the last ones read if it never does."""
    samples: dict[str, float] = {}
    async with asyncio.timeout(15):
        while True:
            _, text, _ = await fresh_get(url + "/metrics")
            samples = parse_metrics(text.decode())
            if until(samples):
                return samples
            await asyncio.sleep(0.3)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_workers_share_the_port_and_metrics_add_up(tmp_path: Path, origin: Upstream) -> None:
    async with edge(tmp_path, origin) as node:
        assert len(node.workers) == 2
        seen = set()
        for _ in range(40):
            status, body, _ = await fresh_get(node.url + "/healthz")
            assert status == 200
            seen.add(json.loads(body)["worker"]["pid"])
        assert seen == set(node.workers)
        for _ in range(30):
            status, body, _ = await fresh_get(node.url + SEGMENT)
            assert (status, body) == (200, BODY)
        # Each worker fetched the object at most once (coalescing is per worker).
        assert 1 <= origin.count(SEGMENT) <= 2
        segments = 'shoal_requests_total{kind="segment"}'
        samples = await node_metrics(node.url, lambda m: m.get(segments) == 30)
        assert samples[segments] == 30
        assert samples['shoal_cache_hits_total{kind="segment"}'] == 30 - origin.count(SEGMENT)
        assert samples['shoal_request_seconds_count{kind="segment"}'] == 30
        # Gauges of a worker's own policy state do not add up: one series per worker.
        gauges = [n for n in samples if n.startswith("shoal_admission_") and "_total" not in n]
        assert all('worker="' in name for name in gauges)


async def test_reload_replaces_the_workers_without_failing_a_request(
    tmp_path: Path, origin: Upstream
) -> None:
    async with edge(tmp_path, origin) as node:
        old = node.workers
        in_flight = asyncio.ensure_future(fresh_get(node.url + SLOW))
        await asyncio.sleep(0.3)
        assert node.process.pid is not None
        os.kill(node.process.pid, signal.SIGHUP)
        statuses = []
        async with asyncio.timeout(30):
            while set(node.workers) & set(old) or any(alive(pid) for pid in old):
                status, _, _ = await fresh_get(node.url + SEGMENT)
                statuses.append(status)
                await asyncio.sleep(0.05)
        assert set(statuses) == {200} and statuses
        status, body, _ = await in_flight
        assert (status, body) == (200, BODY)
        assert len(node.workers) == 2
        assert all(alive(pid) for pid in node.workers)


async def test_stop_lets_responses_in_flight_finish(tmp_path: Path, origin: Upstream) -> None:
    async with edge(tmp_path, origin) as node:
        workers = node.workers
        in_flight = asyncio.ensure_future(fresh_get(node.url + SLOW))
        await asyncio.sleep(0.3)
        node.process.terminate()
        status, body, _ = await in_flight
        assert (status, body) == (200, BODY)
        assert await node.process.wait() == 0
        assert not any(alive(pid) for pid in workers)


async def test_workers_share_out_the_disk_tier_across_a_restart(
    tmp_path: Path, origin: Upstream
) -> None:
    disk = [f"edge.disk_path={tmp_path / 'disk'}", "edge.disk_bytes=50000000"]
    objects = [f"/v/work/360p/obj_{n}.m4s" for n in range(20)]
    async with edge(tmp_path, origin, *disk) as node:
        for path in objects:
            assert (await fresh_get(node.url + path))[0] == 200
    # Stopped: every worker wrote its memory tier down. Restarted: each record has one owner.
    async with edge(tmp_path, origin, *disk) as node:
        samples = await node_metrics(
            node.url, lambda m: m.get("shoal_disk_objects") == len(objects)
        )
        assert samples["shoal_disk_objects"] == len(objects)
