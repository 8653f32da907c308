"""Signed URLs end to end: a player plays a signed video through a real edge and a real
regional node, both with `require_signed`, in front of the real origin that signs playlists.

The player gets its first URL (the master playlist's) signed by the application backend; every
further URL comes from the playlists the origin rewrote. The edge fetches upstream with a token
of its own, which the regional node verifies; unsigned, forged and expired URLs get 403.
"""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from yarl import URL

from core.config import OriginConfig
from core.http.signing import Verdict, sign
from manifests import (
    MasterPlaylist,
    MediaPlaylist,
    Variant,
    media_playlist_for_segments,
    parse,
    render_master,
    render_media,
)
from origin.app import make_origin_app
from origin.store.fs import FilesystemStore
from tests.edge.harness import Node, Served, client_session, node_config

KEYS = ["key-new", "key-old"]
SEGMENTS = 3


def segment(name: str) -> bytes:
    return (name.encode() * 200)[:4096]


def publish(store: FilesystemStore) -> None:
    media = media_playlist_for_segments([2.0] * SEGMENTS, "seg_{index:05d}.m4s", "init.mp4")
    store.put_bytes("videos/abc/360p/index.m3u8", render_media(media).encode())
    store.put_bytes("videos/abc/360p/init.mp4", segment("init"))
    for index in range(SEGMENTS):
        name = f"seg_{index:05d}.m4s"
        store.put_bytes(f"videos/abc/360p/{name}", segment(name))
    master = MasterPlaylist(variants=(Variant(uri="360p/index.m3u8", bandwidth=1_000_000),))
    store.put_bytes("videos/abc/master.m3u8", render_master(master).encode())


@dataclass
class Stack:
    edge: Node
    origin: Served


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    store = FilesystemStore(tmp_path / "store")
    publish(store)
    origin = await Served(
        lambda: make_origin_app(store, OriginConfig(signing_keys=KEYS, signed_url_ttl=600))
    ).start()
    signed_node = {"signing_keys": KEYS, "require_signed": True}
    regional = await Node(
        node_config([origin.url], **signed_node), tier="regional", name="regional-t"
    ).start()
    edge = await Node(node_config([regional.url], **signed_node), name="edge-t").start()
    try:
        yield Stack(edge, origin)
    finally:
        await edge.stop()
        await regional.stop()
        await origin.stop()


def signed(path: str, *, expires: float | None = None, key: str = KEYS[0]) -> str:
    exp = int(time.time() + 600 if expires is None else expires)
    return f"{path}?{urlencode(sign('/v/abc/', exp, key))}"


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with session.get(URL(url, encoded=True)) as response:
        return response.status, await response.read()


async def test_a_signed_video_plays_through_the_tiers(stack: Stack) -> None:
    base = stack.edge.url
    async with client_session() as session:
        status, body = await fetch(session, base + signed("/v/abc/master.m3u8"))
        assert status == 200
        master = parse(body.decode())
        assert isinstance(master, MasterPlaylist)
        variant = master.variants[0].uri
        assert "sig=" in variant
        status, body = await fetch(session, f"{base}/v/abc/{variant}")
        assert status == 200
        media = parse(body.decode())
        assert isinstance(media, MediaPlaylist) and media.init is not None
        uris = [media.init.uri] + [s.uri for s in media.segments]
        assert all("sig=" in uri for uri in uris)
        for uri in uris:
            status, body = await fetch(session, f"{base}/v/abc/360p/{uri}")
            assert status == 200, uri
            assert body == segment(uri.split("?", 1)[0].removesuffix(".mp4"))
        # Another viewer, another token: served from the edge's cache (no token in the key).
        async with session.get(
            URL(base + signed("/v/abc/360p/init.mp4", key=KEYS[1]), encoded=True)
        ) as response:
            assert response.status == 200
            edge_status = response.headers["Cache-Status"].split(",")[-1]
            assert edge_status.split(";")[:2] == [" edge-t", " hit"]


@pytest.mark.parametrize(
    ("target", "verdict"),
    [
        (lambda: "/v/abc/360p/seg_00000.m4s", Verdict.MISSING),
        (lambda: signed("/v/abc/360p/seg_00000.m4s", key="not-our-key"), Verdict.FORGED),
        (
            lambda: signed("/v/abc/360p/seg_00000.m4s").replace("exp=", "exp=1"),
            Verdict.FORGED,
        ),
        (
            lambda: signed("/v/abc/360p/seg_00000.m4s", expires=time.time() - 1),
            Verdict.EXPIRED,
        ),
        (lambda: "/v/abc/master.m3u8?exp=1&pfx=/v/abc/", Verdict.MALFORMED),
    ],
)
async def test_unsigned_forged_and_expired_urls_get_403(
    stack: Stack, target: object, verdict: Verdict
) -> None:
    async with client_session() as session:
        status, body = await fetch(session, stack.edge.url + target())  # type: ignore[operator]
    assert status == 403
    assert body.decode().strip() == verdict.message
