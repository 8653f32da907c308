"""Issue 6's Security acceptance for the tracker: a hostile client flooding it with announces and
every kind of malformed input gets failures, rate limiting and finally a disconnect, while two
well-behaved peers in another swarm still complete announce -> relayed offer -> routed answer
within a bound, at the same time.

test_app.py checks each malformed message alone, with a quiet bystander; here they all arrive
at once, thousands of them, on one connection, with the default rate limits. The clients come
through a trusted proxy (`X-Forwarded-For`) so that each has its own address, as real clients
do: the per-address limit then throttles the flooder alone.
"""

import asyncio
import json
import random
import time
from collections import Counter

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.config import TrackerConfig
from core.p2p.swarm import Reject
from tests.tracker.support import ANSWER, IH, OFFER_ID, SDP, announce, pid, receive
from tracker.app import TRACKER, make_tracker_app

CONFIG = TrackerConfig(port=0, trusted_proxies=["127.0.0.0/8"])
"""The default limits (20 messages/s per address, burst 100; 500/s per swarm)."""
FLOOD_IH = "flood-swarm-00000000"
ANNOUNCES = 3000
EXCHANGE_SECONDS = 3.0
"""Bound on the well-behaved peers' announce -> offer -> answer exchange during the flood."""


def garbage() -> list[str | bytes]:
    """One of each malformed input: bad JSON, wrong field lengths, a huge SDP, unknown
    actions, wrong types, deep nesting, binary frames."""
    base = announce(90, offers=1, info_hash=FLOOD_IH)
    huge_offer = {"offer": {"type": "offer", "sdp": "a" * 60_000}, "offer_id": OFFER_ID}
    return [
        "{not json",
        "",
        "null",
        "[1, 2, 3]",
        '"announce"',
        "[" * 50_000,  # deeper than the JSON decoder recurses
        '{"action": ' * 5_000,
        b"\xff\xfe\x00 binary garbage",
        json.dumps({**base, "info_hash": FLOOD_IH[:-1]}),
        json.dumps({**base, "info_hash": FLOOD_IH + "x"}),
        json.dumps({**base, "peer_id": "-PM0203-" + "x" * 200}),
        json.dumps({**base, "peer_id": None}),
        json.dumps({**base, "answer": ANSWER, "to_peer_id": "short"}),
        json.dumps({**base, "answer": {"type": "offer"}, "to_peer_id": pid(1)}),
        json.dumps({**base, "action": "dance"}),
        json.dumps({**base, "action": None}),
        json.dumps({**base, "event": "exploded"}),
        json.dumps({**base, "offers": {"offer": SDP}}),
        json.dumps({**base, "offers": [{"offer": SDP, "offer_id": 7}]}),
        json.dumps({**base, "offers": [huge_offer]}),  # under the size limit: a valid announce
        json.dumps({**base, "offers": [huge_offer, huge_offer]}),  # over it: "too large"
        json.dumps({"action": "scrape", "info_hash": ["x"] * 1000}),
        json.dumps({"action": "scrape"}),
    ]


async def flood(ws: aiohttp.ClientWebSocketResponse) -> None:
    junk = garbage()
    for n in range(ANNOUNCES):
        await ws.send_json(announce(90 + n % 7, offers=5, info_hash=FLOOD_IH))
        frame = junk[n % len(junk)]
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)


async def failures_seen(ws: aiohttp.ClientWebSocketResponse, reasons: Counter[str]) -> None:
    """Read what the flooder is sent until it is disconnected; count the failure reasons."""
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT:
            reason = json.loads(message.data).get("failure reason")
            if reason is not None:
                reasons[reason] += 1


async def exchange(client: TestClient[web.Request, web.Application]) -> float:
    """Peer 1 joins, peer 2 announces an offer; 1 gets it and answers; 2 gets the answer."""
    started = time.monotonic()
    a = await client.ws_connect("/", headers={"X-Forwarded-For": "198.51.100.1"})
    b = await client.ws_connect("/", headers={"X-Forwarded-For": "198.51.100.2"})
    await a.send_json(announce(1))
    assert (await receive(a))["incomplete"] == 1
    await b.send_json(announce(2, offers=1))
    assert (await receive(b))["incomplete"] == 2
    offer = await receive(a)
    assert (offer["peer_id"], offer["offer"], offer["info_hash"]) == (pid(2), SDP, IH)
    await a.send_json(
        {
            "action": "announce",
            "info_hash": IH,
            "peer_id": pid(1),
            "to_peer_id": pid(2),
            "answer": ANSWER,
            "offer_id": offer["offer_id"],
        }
    )
    routed = await receive(b)
    assert (routed["peer_id"], routed["answer"], routed["offer_id"]) == (
        pid(1),
        ANSWER,
        offer["offer_id"],
    )
    elapsed = time.monotonic() - started
    await a.close()
    await b.close()
    return elapsed


async def test_a_flooder_is_throttled_and_cut_off_while_others_swarm_undisturbed() -> None:
    app = make_tracker_app(CONFIG, rng=random.Random(3))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        flooder = await client.ws_connect(
            "/", headers={"X-Forwarded-For": "203.0.113.66"}, max_msg_size=0
        )
        reasons: Counter[str] = Counter()
        reader = asyncio.create_task(failures_seen(flooder, reasons))
        sender = asyncio.create_task(flood(flooder))
        async with asyncio.timeout(10):
            while not reasons["rate limited"]:  # the flood is under way
                await asyncio.sleep(0.01)
        elapsed = await exchange(client)
        assert elapsed < EXCHANGE_SECONDS
        assert not sender.done(), "the flood ended before the exchange: not concurrent"
        await asyncio.wait_for(sender, 60)
        # Frames past four times the size limit are not even read: the connection is closed.
        await flooder.send_str("x" * (4 * CONFIG.max_message_bytes + 1))
        await asyncio.wait_for(reader, 10)
        assert flooder.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG

        counters = app[TRACKER].book.counters
        # Past its burst the flooder's announces are refused; it got far fewer through.
        assert counters.announces < ANNOUNCES // 2
        assert counters.rejects[Reject.RATE_LIMITED] > ANNOUNCES // 2
        for reason in (
            Reject.BAD_JSON,
            Reject.BAD_INFO_HASH,
            Reject.BAD_PEER_ID,
            Reject.BAD_TO_PEER_ID,
            Reject.BAD_ANSWER,
            Reject.BAD_ACTION,
            Reject.BAD_EVENT,
            Reject.BAD_OFFERS,
            Reject.TOO_LARGE,
        ):
            assert counters.rejects[reason] > 0, reason
        assert reasons["rate limited"] > 0 and reasons["invalid JSON"] > 0
        # The flooder left its swarm; the good peers' swarm is gone with them, nothing else.
        async with asyncio.timeout(5):
            while app[TRACKER].book.peer_count:
                await asyncio.sleep(0.01)
        assert app[TRACKER].book.swarm_count == 0

        # And the tracker still serves newcomers as usual.
        assert await exchange(client) < EXCHANGE_SECONDS
    finally:
        await client.close()
