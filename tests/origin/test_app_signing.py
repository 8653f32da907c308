"""The origin with signing keys: served playlists carry signed URIs that verify, caches keep
them no longer than half the token lifetime, and they have no validators."""

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.config import OriginConfig
from core.http.signing import Verdict, strip_token, verify_target
from manifests import MasterPlaylist, MediaPlaylist, parse
from origin.app import make_origin_app
from origin.store.fs import FilesystemStore

KEYS = ["key-new", "key-old"]
TTL = 600
MASTER = (
    "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    "#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n360p/index.m3u8\n"
    "#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720\n720p/index.m3u8\n"
)
MEDIA = (
    "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    '#EXT-X-MAP:URI="init.mp4"\n'
    "#EXTINF:2.000,\nseg_00000.m4s\n#EXTINF:2.000,\nseg_00001.m4s\n"
    "#EXTINF:2.000,\n/v/abc/360p/seg_00002.m4s\n"
    "#EXTINF:2.000,\nhttps://elsewhere.example/seg.m4s\n"
    "#EXT-X-ENDLIST\n"
)


@pytest.fixture
def store(tmp_path: Path) -> FilesystemStore:
    store = FilesystemStore(tmp_path / "store")
    store.put_bytes("videos/abc/master.m3u8", MASTER.encode())
    store.put_bytes("videos/abc/360p/index.m3u8", MEDIA.encode())
    store.put_bytes("videos/abc/360p/seg_00000.m4s", b"segment-0")
    store.put_bytes("videos/abc/360p/bad.m3u8", b"not a playlist\n")
    return store


async def client_for(
    store: FilesystemStore, config: OriginConfig
) -> TestClient[web.Request, web.Application]:
    client = TestClient(TestServer(make_origin_app(store, config)))
    await client.start_server()
    return client


@pytest.fixture
async def client(
    store: FilesystemStore,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = await client_for(
        store, OriginConfig(signing_keys=KEYS, signed_url_ttl=TTL, playlist_max_age=3600)
    )
    yield client
    await client.close()


async def test_master_playlist_uris_are_signed_for_the_video(
    client: TestClient[web.Request, web.Application],
) -> None:
    before = time.time()
    response = await client.get("/v/abc/master.m3u8")
    assert response.status == 200
    text = await response.text()
    playlist = parse(text)
    assert isinstance(playlist, MasterPlaylist)
    uris = [variant.uri for variant in playlist.variants]
    assert [strip_token(uri) for uri in uris] == ["360p/index.m3u8", "720p/index.m3u8"]
    for uri in uris:
        target = f"/v/abc/{uri}"
        assert verify_target(target, before, KEYS[:1]) is Verdict.OK  # the first key signs
        assert verify_target(target, before, KEYS[1:]) is Verdict.FORGED
        assert verify_target(target, before + TTL - 2, KEYS) is Verdict.OK
        assert verify_target(target, before + TTL + 2, KEYS) is Verdict.EXPIRED
        assert verify_target(f"/v/other/{uri}", before, KEYS) is Verdict.FORGED
    # Everything but the URIs is as stored.
    assert [line for line in text.split("\n") if line.startswith("#")] == [
        line for line in MASTER.split("\n") if line.startswith("#")
    ]


async def test_media_playlist_init_and_segment_uris_are_signed(
    client: TestClient[web.Request, web.Application],
) -> None:
    now = time.time()
    response = await client.get("/v/abc/360p/index.m3u8")
    assert response.status == 200
    playlist = parse(await response.text())
    assert isinstance(playlist, MediaPlaylist)
    assert playlist.init is not None
    base = "/v/abc/360p/"
    assert verify_target(base + playlist.init.uri, now, KEYS) is Verdict.OK
    uris = [segment.uri for segment in playlist.segments]
    assert verify_target(base + uris[0], now, KEYS) is Verdict.OK
    assert verify_target(base + uris[1], now, KEYS) is Verdict.OK
    assert verify_target(uris[2], now, KEYS) is Verdict.OK  # an absolute path in the video
    assert uris[3] == "https://elsewhere.example/seg.m4s"  # not ours: untouched


async def test_signed_playlists_live_at_most_half_the_token_lifetime_and_have_no_validators(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/v/abc/master.m3u8")
    assert response.headers["Cache-Control"] == f"public, max-age={TTL // 2}"
    assert "ETag" not in response.headers and "Last-Modified" not in response.headers
    body = await response.read()
    # A conditional request cannot turn into a 304 that would freshen expiring tokens.
    again = await client.get(
        "/v/abc/master.m3u8",
        headers={"If-Modified-Since": "Tue, 01 Jan 2999 00:00:00 GMT", "If-None-Match": '"x"'},
    )
    assert again.status == 200
    # HEAD announces the rewritten length; a Range applies to the rewritten body.
    head = await client.head("/v/abc/master.m3u8")
    assert int(head.headers["Content-Length"]) == len(body)
    ranged = await client.get("/v/abc/master.m3u8", headers={"Range": "bytes=0-6"})
    assert ranged.status == 206 and await ranged.read() == b"#EXTM3U"


async def test_a_short_playlist_max_age_is_kept(store: FilesystemStore) -> None:
    client = await client_for(
        store, OriginConfig(signing_keys=KEYS, signed_url_ttl=TTL, playlist_max_age=2)
    )
    try:
        response = await client.get("/v/abc/master.m3u8")
        assert response.headers["Cache-Control"] == "public, max-age=2"
    finally:
        await client.close()


async def test_segments_are_served_as_stored_with_or_without_a_token(
    client: TestClient[web.Request, web.Application],
) -> None:
    for target in ("/v/abc/360p/seg_00000.m4s", "/v/abc/360p/seg_00000.m4s?exp=1&sig=x"):
        response = await client.get(target)
        assert response.status == 200 and await response.read() == b"segment-0"
        assert "ETag" in response.headers and "immutable" in response.headers["Cache-Control"]


async def test_an_unparseable_playlist_is_a_server_error(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/v/abc/360p/bad.m3u8")
    assert response.status == 500


async def test_without_keys_playlists_are_served_as_stored(store: FilesystemStore) -> None:
    client = await client_for(store, OriginConfig())
    try:
        response = await client.get("/v/abc/master.m3u8")
        assert await response.text() == MASTER and "ETag" in response.headers
    finally:
        await client.close()
