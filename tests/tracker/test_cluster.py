"""Two tracker processes sharing a real redis-server: peers on either are matched."""

import asyncio
import random
import secrets

import redis.asyncio as redis
from aiohttp.test_utils import TestClient, TestServer

from core.config import TrackerConfig
from tests.tracker.support import ANSWER, IH, OFFER_ID, SDP, announce, answer, pid, receive
from tracker.app import make_tracker_app


async def test_offer_and_answer_cross_processes_and_leaving_cleans_redis(redis_url: str) -> None:
    prefix = f"test-{secrets.token_hex(4)}:"
    config = TrackerConfig(ip_rate=0.0, swarm_rate=0.0, redis_url=redis_url, redis_prefix=prefix)
    a = TestClient(TestServer(make_tracker_app(config, process="a", rng=random.Random(1))))
    b = TestClient(TestServer(make_tracker_app(config, process="b", rng=random.Random(2))))
    await a.start_server()
    await b.start_server()
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        on_b = await b.ws_connect("/")
        await on_b.send_json(announce(2))
        assert (await receive(on_b))["incomplete"] == 1
        on_a = await a.ws_connect("/")
        await on_a.send_json(announce(1, offers=3))
        assert (await receive(on_a))["incomplete"] == 2  # counts the peer on b
        offer = await receive(on_b)
        assert (offer["peer_id"], offer["offer"], offer["info_hash"]) == (pid(1), SDP, IH)
        await on_b.send_json({**answer(2, to=1), "offer_id": offer["offer_id"]})
        assert await receive(on_a) == {
            "action": "announce",
            "answer": ANSWER,
            "offer_id": OFFER_ID[:-1] + "0",
            "peer_id": pid(2),
            "info_hash": IH,
        }
        key = f"{prefix}swarm:{IH}"
        assert set(await store.hkeys(key)) == {pid(1), pid(2)}
        await on_b.close()
        async with asyncio.timeout(5):
            while pid(2) in await store.hkeys(key):
                await asyncio.sleep(0.02)
        await on_a.send_json(announce(1, event=None))
        assert (await receive(on_a))["incomplete"] == 1
    finally:
        await a.close()
        await b.close()
    # Closing the processes took their peers out of Redis.
    assert await store.hkeys(f"{prefix}swarm:{IH}") == []
    await store.aclose()
