"""Helpers for tracker tests: WebSocket peers speaking p2p-media-loader 2.3's messages."""

import asyncio
import json
from typing import Any

import aiohttp

IH = "i/a4IGfs0WPVgc3Sn/iT"  # the captured info_hash (p2p.md 1a)
OFFER_ID = "".join(chr(c) for c in range(0xE0, 0xF4))  # 20 latin-1 "binary" characters
SDP = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" + "a=x\r\n" * 120}
ANSWER = {"type": "answer", "sdp": "v=0\r\n"}
TIMEOUT = 5.0


def pid(n: int) -> str:
    return f"-PM0203-{n:012d}"


def announce(peer: int, offers: int = 0, info_hash: str = IH, **extra: Any) -> dict[str, Any]:
    return {
        "numwant": 5,
        "uploaded": 0,
        "downloaded": 0,
        "event": "started",
        "action": "announce",
        "info_hash": info_hash,
        "peer_id": pid(peer),
        "offers": [{"offer": SDP, "offer_id": OFFER_ID[:-1] + str(i)} for i in range(offers)],
        **extra,
    }


def answer(peer: int, to: int, info_hash: str = IH) -> dict[str, Any]:
    return {
        "action": "announce",
        "info_hash": info_hash,
        "peer_id": pid(peer),
        "to_peer_id": pid(to),
        "answer": ANSWER,
        "offer_id": OFFER_ID,
    }


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), TIMEOUT)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    decoded: dict[str, Any] = json.loads(message.data)
    return decoded


async def nothing_more(
    ws: aiohttp.ClientWebSocketResponse, peer: aiohttp.ClientWebSocketResponse
) -> None:
    """Assert `ws` got nothing so far: a scrape on `peer`'s connection is answered after any
    message the tracker queued for `ws` before it (one event loop, in order)."""
    await peer.send_json({"action": "scrape", "info_hash": IH})
    assert (await receive(peer))["action"] == "scrape"
    await ws.send_json({"action": "scrape", "info_hash": IH})
    assert (await receive(ws))["action"] == "scrape"
