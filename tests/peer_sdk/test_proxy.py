"""The player proxy and the paced reader, HTTP only (no tracker), against the real origin app."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.config import OriginConfig
from origin.app import make_origin_app
from origin.ladder import SAMPLE_LADDER, package_video
from origin.store.fs import FilesystemStore
from peer_sdk.peer import Peer
from peer_sdk.proxy import make_proxy_app
from tests.peer_sdk.content import Package, publish


@pytest.fixture
def package_store(tmp_path: Path) -> tuple[FilesystemStore, Package]:
    store = FilesystemStore(tmp_path / "store")
    return store, publish(store, "vid", count=6, size=5000)


@pytest.fixture
async def peer(package_store: tuple[FilesystemStore, Package]) -> AsyncIterator[Peer]:
    store, _ = package_store
    async with TestServer(make_origin_app(store, OriginConfig())) as origin:
        peer = Peer(str(origin.make_url("")), None, rng=random.Random(3))
        await peer.start()
        try:
            yield peer
        finally:
            await peer.close()


async def test_proxy_forwards_playlists_and_serves_segments_through_the_brain(
    peer: Peer, package_store: tuple[FilesystemStore, Package]
) -> None:
    _, package = package_store
    async with TestClient(TestServer(make_proxy_app(peer))) as client:
        master = await client.get("/v/vid/master.m3u8")
        assert master.status == 200 and "360p/index.m3u8" in await master.text()
        media = await client.get("/v/vid/360p/index.m3u8")
        assert media.status == 200 and "seg_00005.m4s" in await media.text()
        init = await client.get("/v/vid/360p/init.mp4")  # not a media segment: forwarded
        assert await init.read() == b"synthetic-init"
        for index in (0, 3):
            response = await client.get(f"/v/vid/360p/seg_{index:05d}.m4s")
            assert await response.read() == package.segments[index]
        assert (await client.get("/v/vid/360p/nope.m4s")).status == 404
        # a rendition the master does not list: forwarded (the origin's 404), not a 500
        assert (await client.get("/v/vid/720p/index.m3u8")).status == 404
        stats = await (await client.get("/stats")).json()
        assert stats["http_bytes"] >= len(package.segments[0]) + len(package.segments[3])
        assert stats["p2p_bytes"] == 0 and stats["offload_ratio"] == 0.0
        assert stats["streams"][0]["rendition"] == "360p"
        metrics = await (await client.get("/metrics")).text()
        assert f'shoal_peer_received_bytes_total{{source="http"}} {stats["http_bytes"]}' in (
            metrics.replace(".0\n", "\n")
        )
        assert "shoal_peer_offload_ratio 0.0" in metrics


async def test_paced_reader_plays_every_segment_in_order(
    peer: Peer, package_store: tuple[FilesystemStore, Package]
) -> None:
    _, package = package_store
    result = await peer.play("vid", "360p", speed=100.0)
    assert (result.segments, result.bytes, result.sha256) == (6, package.size, package.sha256)
    assert peer.stats()["http_bytes"] == package.size


async def test_unknown_rendition_is_refused(peer: Peer) -> None:
    with pytest.raises(LookupError):
        await peer.open("vid", "1080p")


async def test_edge_down_is_a_bad_gateway() -> None:
    peer = Peer("http://127.0.0.1:9", None)
    await peer.start()
    try:
        async with TestClient(TestServer(make_proxy_app(peer))) as client:
            assert (await client.get("/v/vid/master.m3u8")).status == web.HTTPBadGateway.status_code
    finally:
        await peer.close()


@pytest.mark.slow
async def test_ffmpeg_plays_a_shoal_video_through_the_proxy(tmp_path: Path) -> None:
    """A real HLS player (ffmpeg's demuxer) plays a real package through the proxy: every
    segment it reads is answered by the peer's brain (here from the edge: no tracker)."""
    store = FilesystemStore(tmp_path / "store")
    seconds = "6"
    inputs = ["-t", seconds, "-f", "lavfi", "-i", "testsrc2=size=360x640:rate=30"]
    package_video(store, "ffvid", inputs, SAMPLE_LADDER[:1], audio_input=None)
    async with TestServer(make_origin_app(store, OriginConfig())) as origin:
        peer = Peer(str(origin.make_url("")), None, rng=random.Random(5))
        await peer.start()
        try:
            async with TestServer(make_proxy_app(peer)) as proxy:
                played = await asyncio.create_subprocess_exec(
                    "ffmpeg", "-v", "error", "-i", str(proxy.make_url("/v/ffvid/master.m3u8")),
                    "-map", "0:v:0", "-f", "framemd5", "-",
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                output, errors = await asyncio.wait_for(played.communicate(), 60)
                assert played.returncode == 0, errors.decode()
            frames = [line for line in output.decode().splitlines() if not line.startswith("#")]
            assert len(frames) == 6 * 30
            stats = peer.stats()
            assert stats["http_bytes"] > 0 and stats["p2p_bytes"] == 0
        finally:
            await peer.close()
        store.close()
