"""The WebTorrent tracker client's messages, against a scripted tracker on loopback.

No connection is completed here (WebRTC needs non-loopback addresses: see test_swarm.py); what
is checked is what p2p-media-loader's tracker expects to read.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from aiortc import RTCConfiguration, RTCPeerConnection

from peer_sdk.tracker_client import PeerChannel, TrackerClient

INFO_HASH = "i/a4IGfs0WPVgc3Sn/iT"
PEER_ID = "-PM0203-P2VAIC8JtRoj"


class ScriptedTracker:
    """Records what the client sends; the test decides what to send back."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.socket: web.WebSocketResponse | None = None
        self.app = web.Application()
        self.app.router.add_get("/", self.handle)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = self.socket = web.WebSocketResponse()
        await ws.prepare(request)
        async for frame in ws:
            if frame.type == WSMsgType.TEXT:
                await self.received.put(json.loads(frame.data))
        return ws

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.received.get(), 10)


@pytest.fixture
async def tracker() -> AsyncIterator[tuple[ScriptedTracker, str]]:
    scripted = ScriptedTracker()
    async with TestServer(scripted.app) as server:
        yield scripted, str(server.make_url("/")).replace("http", "ws", 1)


async def never(info_hash: str, remote: str, link: PeerChannel) -> None:
    raise AssertionError("no connection completes on loopback")


async def test_announces_five_complete_offers_then_reannounces_per_interval(
    tracker: tuple[ScriptedTracker, str],
) -> None:
    scripted, url = tracker
    client = TrackerClient(url, PEER_ID, never, stats=lambda: (7, 9))
    await client.start()
    try:
        await client.join(INFO_HASH)
        first = await scripted.next()
        offers = first.pop("offers")
        assert first == {
            "action": "announce",
            "info_hash": INFO_HASH,
            "peer_id": PEER_ID,
            "numwant": 5,
            "uploaded": 7,
            "downloaded": 9,
            "event": "started",
        }
        assert len(offers) == 5
        for offer in offers:
            assert offer["offer"]["type"] == "offer"
            assert "a=sctp-port" in offer["offer"]["sdp"]  # a data channel, gathered (no trickle)
            assert len(offer["offer_id"]) == 20
            assert all(ord(c) < 256 for c in offer["offer_id"])  # a latin-1 "binary string"
        assert len({o["offer_id"] for o in offers}) == 5
        assert scripted.socket is not None
        await scripted.socket.send_str(
            json.dumps({"action": "announce", "interval": 0.2, "info_hash": INFO_HASH})
        )
        loop = asyncio.get_running_loop()
        asked = loop.time()
        again = await scripted.next()  # not after the default 30 s: the new interval counts
        assert loop.time() - asked < 5
        assert "event" not in again and len(again["offers"]) == 5
    finally:
        await client.close()


async def test_answers_a_relayed_offer_to_its_sender(tracker: tuple[ScriptedTracker, str]) -> None:
    scripted, url = tracker
    client = TrackerClient(url, PEER_ID, never)
    await client.start()
    remote = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await client.join(INFO_HASH)
        await scripted.next()
        remote.createDataChannel("a" * 40)
        await remote.setLocalDescription(await remote.createOffer())
        assert scripted.socket is not None
        relayed = {
            "action": "announce",
            "info_hash": INFO_HASH,
            "peer_id": "-PM0203-remoteremote",
            "offer_id": "x" * 20,
            "offer": {"type": "offer", "sdp": remote.localDescription.sdp},
        }
        await scripted.socket.send_str(json.dumps(relayed))
        answer = await scripted.next()
        sdp = answer.pop("answer")
        assert answer == {
            "action": "announce",
            "info_hash": INFO_HASH,
            "peer_id": PEER_ID,
            "to_peer_id": "-PM0203-remoteremote",
            "offer_id": "x" * 20,
        }
        assert sdp["type"] == "answer" and re.search(r"^a=sctp-port:", sdp["sdp"], re.M)
        await scripted.socket.send_str(json.dumps(relayed))  # the same peer again: ignored
        await scripted.socket.send_str("not json")  # and nonsense: ignored
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(scripted.received.get(), 0.5)
    finally:
        await remote.close()
        await client.close()
