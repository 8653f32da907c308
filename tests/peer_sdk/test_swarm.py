"""End to end: Python peers in their own network namespaces, a real origin and tracker.

The servers run in this (root) namespace on the private address of the first namespace's
uplink (never the machine's own interface); each peer is a `python -m peer_sdk` process
started with `ip netns exec`, and the peers reach each other over their direct veth link.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from core.config import OriginConfig, TrackerConfig
from origin.app import make_origin_app
from origin.store.fs import FilesystemStore
from tests.netns import Lan, Namespace, require_netns
from tests.peer_sdk.content import Package, publish
from tracker.app import make_tracker_app

# Namespace tests run on one xdist worker, one after the other.
pytestmark = [pytest.mark.xdist_group("netns"), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
PEER = [sys.executable, "-m", "peer_sdk"]


@asynccontextmanager
async def serving(app: web.Application, host: str) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def stack(tmp_path: Path) -> AsyncIterator[tuple[list[Namespace], str, str, Package]]:
    """Two namespaces on a LAN, an origin with one synthetic video and a tracker on the LAN's
    host address: (namespaces, edge, tracker, package)."""
    require_netns()
    store = FilesystemStore(tmp_path / "store")
    package = publish(store, "swarmvid")
    with Lan() as lan:
        namespaces = [lan.add(), lan.add()]
        origin = make_origin_app(store, OriginConfig())
        tracker = make_tracker_app(TrackerConfig(host=lan.host_address, port=0))
        async with (
            serving(origin, lan.host_address) as edge,
            serving(tracker, lan.host_address) as ws,
        ):
            yield namespaces, f"http://{edge}", f"ws://{ws}/", package


class Process:
    """A child in a namespace whose stdout is one JSON object (or word) per line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, namespace: Namespace, *args: str) -> Process:
        process = await asyncio.create_subprocess_exec(
            *namespace.command(args),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def line(self, timeout: float) -> Any:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        assert raw, "the process exited early (its log is on stderr above)"
        text = raw.decode().strip()
        return json.loads(text) if text.startswith("{") else text

    async def until(self, event: str, timeout: float) -> dict[str, Any]:
        while True:
            line = await self.line(timeout)
            if isinstance(line, dict) and line["event"] == event:
                return line

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def peer_args(edge: str, tracker: str, video: str, *extra: str) -> list[str]:
    return [*PEER, "--edge", edge, "--tracker", tracker, "--play", video, *extra]


@pytest.mark.timeout(90)
async def test_second_viewer_gets_most_bytes_from_the_first(tmp_path: Path) -> None:
    async with stack(tmp_path) as (namespaces, edge, tracker, package):
        first = await Process.start(
            namespaces[0],
            *peer_args(edge, tracker, package.video_id, "--speed", "30", "--linger", "60"),
        )
        second: Process | None = None
        try:
            played = await first.until("played", 30)
            assert played["result"]["sha256"] == package.sha256
            assert played["stats"]["p2p_bytes"] == 0
            second = await Process.start(
                namespaces[1],
                *peer_args(edge, tracker, package.video_id, "--speed", "6", "--wait-peers", "1"),
            )
            played = await second.until("played", 40)
            stats = played["stats"]
            assert played["result"]["sha256"] == package.sha256
            assert stats["http_bytes"] + stats["p2p_bytes"] == package.size
            assert stats["offload_ratio"] >= 0.4, stats
            assert stats["integrity_failures"] == 0
            await first.stop()
            closed = await first.until("closed", 10)
            assert closed["stats"]["uploaded_bytes"] == stats["p2p_bytes"]
            print(f"second viewer offload: {stats['offload_ratio']:.1%}", stats)
        finally:
            for process in (first, second):
                if process is not None:
                    await process.stop()


@pytest.mark.timeout(90)
async def test_corrupt_peer_is_dropped_and_http_serves_the_right_bytes(tmp_path: Path) -> None:
    async with stack(tmp_path) as (namespaces, edge, tracker, package):
        evil = await Process.start(
            namespaces[0],
            sys.executable,
            "-m",
            "tests.peer_sdk.evil_peer",
            edge,
            tracker,
            package.video_id,
        )
        viewer: Process | None = None
        try:
            assert await evil.line(30) == "ready"
            viewer = await Process.start(
                namespaces[1],
                *peer_args(edge, tracker, package.video_id, "--speed", "6", "--wait-peers", "1"),
            )
            played = await viewer.until("played", 40)
            stats = played["stats"]
            assert played["result"]["sha256"] == package.sha256  # zero corrupted bytes played
            assert stats["integrity_failures"] == 1 and stats["peers_dropped"] == 1, stats
            assert stats["p2p_bytes"] == 0 and stats["http_bytes"] == package.size
        finally:
            for process in (evil, viewer):
                if process is not None:
                    await process.stop()
