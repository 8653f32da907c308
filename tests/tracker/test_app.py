"""The tracker over real WebSockets: p2p.md 1a's message shapes, failures, limits, locality."""

import asyncio
import ipaddress
import json
import random
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.config import TrackerConfig
from core.geo.mmdb import Metadata, build
from tests.tracker.support import (
    ANSWER,
    IH,
    OFFER_ID,
    SDP,
    announce,
    answer,
    nothing_more,
    pid,
    receive,
)
from tracker.app import TRACKER, Tracker, make_tracker_app

CONFIG = TrackerConfig(port=0, ip_rate=0.0, swarm_rate=0.0)
Client = TestClient[web.Request, web.Application]


def _tracker(client: Client) -> Tracker:
    app = client.app
    assert app is not None
    return app[TRACKER]


async def _client(config: TrackerConfig = CONFIG) -> Client:
    client = TestClient(TestServer(make_tracker_app(config, rng=random.Random(7))))
    await client.start_server()
    return client


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    client = await _client()
    yield client
    await client.close()


async def test_two_peers_offer_answer_and_stop_on_close(client: Client) -> None:
    a = await client.ws_connect("/")
    b = await client.ws_connect("/announce")
    await a.send_json(announce(1))
    assert await receive(a) == {
        "action": "announce",
        "interval": 120,
        "info_hash": IH,
        "complete": 0,
        "incomplete": 1,
    }
    await b.send_json(announce(2, offers=5))
    reply = await receive(b)
    assert (reply["complete"], reply["incomplete"], reply["interval"]) == (0, 2, 120)
    offer = await receive(a)
    assert offer == {
        "action": "announce",
        "offer": SDP,
        "offer_id": OFFER_ID[:-1] + "0",
        "peer_id": pid(2),
        "info_hash": IH,
    }
    await a.send_json(answer(1, to=2))
    assert await receive(b) == {
        "action": "announce",
        "answer": ANSWER,
        "offer_id": OFFER_ID,  # the latin-1 characters come back unchanged
        "peer_id": pid(1),
        "info_hash": IH,
    }
    await nothing_more(a, b)  # no reply to the answerer, one offer only for one other peer
    stats = await (await client.get("/stats.json")).json()
    assert (stats["torrents"], stats["peersAll"], stats["peersLeecherOnly"]) == (1, 2, 2)
    assert stats["clients"] == {"p2p-media-loader": {"2.3": 2}}
    assert set(stats) == {
        "torrents", "activeTorrents", "peersAll", "peersSeederOnly", "peersLeecherOnly",
        "peersSeederAndLeecher", "peersIPv4", "peersIPv6", "clients",
    }  # fmt: skip
    await a.close()
    book = _tracker(client).book
    await b.send_json(announce(2, event=None))
    assert (await receive(b))["incomplete"] == 1  # a's close was a synthetic `stopped`
    assert book.members(IH) == {pid(2): 2}
    await b.close()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("{not json", "invalid JSON"),
        (json.dumps({**announce(1), "info_hash": "short"}), "invalid info_hash"),
        (json.dumps({**announce(1), "peer_id": 5}), "invalid peer_id"),
        (
            json.dumps({**announce(1), "answer": ANSWER}),
            "invalid `to_peer_id` (required with `answer`)",
        ),
        (json.dumps({**announce(1), "action": "dance"}), "invalid action"),
        (json.dumps({**announce(1), "offers": [{"offer": 1}]}), "invalid offers"),
        (
            json.dumps(announce(1, offers=1)).replace("v=0", "v=0" + "x" * 70_000),
            "message too large",
        ),
    ],
)
async def test_bad_input_gets_a_failure_and_disturbs_no_one(
    client: Client, frame: str, reason: str
) -> None:
    good = await client.ws_connect("/")
    await good.send_json(announce(2))
    await receive(good)
    bad = await client.ws_connect("/")
    await bad.send_str(frame)
    failure = await receive(bad)
    assert failure["failure reason"] == reason
    assert _tracker(client).book.members(IH) == {pid(2): 1}
    await bad.send_json(announce(3))  # the connection still works
    assert (await receive(bad))["incomplete"] == 2
    metrics = await (await client.get("/metrics")).text()
    label = {"message too large": "too_large", "invalid JSON": "bad_json"}.get(reason)
    if label:
        assert f'shoal_tracker_rejects_total{{reason="{label}"}} 1.0' in metrics


async def test_huge_frames_close_the_connection(client: Client) -> None:
    ws = await client.ws_connect("/")
    await ws.send_str("x" * (4 * 65_536 + 1))
    message = await asyncio.wait_for(ws.receive(), 5)
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_health_metrics_and_plain_get(client: Client) -> None:
    assert await (await client.get("/healthz")).text() == "ok\n"
    ws = await client.ws_connect("/")
    await ws.send_json(announce(1))
    await receive(ws)
    metrics = await (await client.get("/metrics")).text()
    for line in (
        "shoal_tracker_peers 1.0",
        "shoal_tracker_swarms 1.0",
        "shoal_tracker_connections 1.0",
        "shoal_tracker_announces_total 1.0",
        'shoal_tracker_relays_total{kind="offer"} 0.0',
    ):
        assert line in metrics
    assert "WebSocket" in await (await client.get("/")).text()


async def test_swarm_cap_and_connection_cap() -> None:
    client = await _client(
        TrackerConfig(ip_rate=0.0, swarm_rate=0.0, max_swarm_peers=1, max_connections=2)
    )
    try:
        a, b = await client.ws_connect("/"), await client.ws_connect("/")
        await a.send_json(announce(1))
        await receive(a)
        await b.send_json(announce(2))
        assert (await receive(b))["failure reason"] == "swarm full"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/")
        assert refused.value.status == 503
    finally:
        await client.close()


async def test_per_address_rate_limit() -> None:
    client = await _client(TrackerConfig(ip_rate=0.5, ip_burst=2, swarm_rate=0.0))
    try:
        ws = await client.ws_connect("/")
        for _ in range(2):
            await ws.send_json(announce(1))
            assert "failure reason" not in await receive(ws)
        await ws.send_json(announce(1))
        assert (await receive(ws))["failure reason"] == "rate limited"
    finally:
        await client.close()


async def test_silent_peers_are_dropped() -> None:
    client = await _client(TrackerConfig(ip_rate=0.0, swarm_rate=0.0, announce_interval=1))
    try:
        ws = await client.ws_connect("/")
        await ws.send_json(announce(1))
        assert (await receive(ws))["interval"] == 1
        book = _tracker(client).book
        async with asyncio.timeout(5):
            while book.peer_count:  # the tracker's own timer drops it after 2 s
                await asyncio.sleep(0.05)
        assert book.counters.peers_expired == 1
        assert not ws.closed  # the connection stays: only the membership expired
    finally:
        await client.close()


async def test_offers_go_to_the_same_pop_first_with_a_maxmind_db(tmp_path: str) -> None:
    db = build(
        [
            (ipaddress.ip_network("127.0.0.0/8"), {"country": {"iso_code": "FR"}}),
            (ipaddress.ip_network("10.0.0.0/8"), {"pop": "par1", "autonomous_system_number": 1}),
        ],
        Metadata("Shoal-PoP", build_epoch=1),
    )
    path = f"{tmp_path}/pops.mmdb"
    with open(path, "wb") as file:
        file.write(db)
    config = TrackerConfig(
        ip_rate=0.0, swarm_rate=0.0, geoip_db=path, trusted_proxies=["127.0.0.0/8"]
    )
    client = await _client(config)
    try:
        far = []
        for n in range(6):  # FR, in another PoP
            ws = await client.ws_connect("/", params={"pop": "ams1"})
            await ws.send_json(announce(n))
            await receive(ws)
            far.append(ws)
        near = await client.ws_connect("/", headers={"X-Forwarded-For": "10.1.2.3"})
        await near.send_json(announce(10))
        await receive(near)
        for attempt in range(5):
            newcomer = await client.ws_connect("/", params={"pop": "par1"})
            await newcomer.send_json(announce(20 + attempt, offers=1))
            await receive(newcomer)
            assert (await receive(near))["peer_id"] == pid(20 + attempt)
            await newcomer.close()
        book = _tracker(client).book
        assert book.stats()["peersAll"] == 7
    finally:
        await client.close()


async def _origin(known: set[str]) -> tuple[TestServer, list[str]]:
    """An origin implementing the allow-list contract; records the hashes it was asked."""
    asked: list[str] = []

    async def swarms(request: web.Request) -> web.Response:
        info_hash = request.query["info_hash"]
        asked.append(info_hash)
        await asyncio.sleep(0.05)  # long enough for concurrent announces to pile up
        if info_hash not in known:
            raise web.HTTPNotFound()
        return web.json_response({"info_hash": info_hash, "video": "v1", "rendition": "360p"})

    app = web.Application()
    app.router.add_get("/api/swarms", swarms)
    server = TestServer(app)
    await server.start_server()
    return server, asked


async def test_allow_list_asks_the_origin_once_and_refuses_unknown_hashes() -> None:
    origin, asked = await _origin({IH})
    config = TrackerConfig(
        ip_rate=0.0, swarm_rate=0.0, allow_list=True, origin_url=str(origin.make_url(""))
    )
    client = await _client(config)
    try:
        peers = [await client.ws_connect("/") for _ in range(3)]
        for n, ws in enumerate(peers):
            await ws.send_json(announce(n))
        replies = [await receive(ws) for ws in peers]
        assert all("failure reason" not in r for r in replies)
        assert asked == [IH]  # concurrent lookups coalesced, then cached
        unknown = "u" * 20
        await peers[0].send_json(announce(0, info_hash=unknown))
        assert await receive(peers[0]) == {
            "failure reason": "info_hash not allowed",
            "info_hash": unknown,
            "action": "announce",
        }
        await peers[1].send_json(announce(1, info_hash=unknown))
        assert (await receive(peers[1]))["failure reason"] == "info_hash not allowed"
        assert asked == [IH, unknown]  # the negative answer is cached too
        assert _tracker(client).book.info_hashes() == [IH]
    finally:
        await client.close()
        await origin.close()


async def test_allow_list_with_the_origin_down_refuses() -> None:
    origin, _ = await _origin(set())
    url = str(origin.make_url(""))
    await origin.close()
    config = TrackerConfig(allow_list=True, origin_url=url, allow_timeout=1.0)
    client = await _client(config)
    try:
        ws = await client.ws_connect("/")
        await ws.send_json(announce(1))
        assert (await receive(ws))["failure reason"] == "info_hash not allowed"
    finally:
        await client.close()
