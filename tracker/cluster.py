"""Several tracker processes behind one name, matched through Redis.

Each process keeps its own WebSocket connections and `SwarmBook`. What the others need lives
in Redis:

- membership: the hash `{prefix}swarm:{info_hash}` maps each peer id to
  `[process, expires_at, pop, asn, country, region, seeder]` (JSON; `expires_at` in POSIX
  seconds, twice the announce interval ahead). Every announce refreshes its field and the key's
  own expiry; leaving deletes the field. A process that dies leaves fields that readers ignore
  once expired (and the key itself expires when its swarm goes quiet);
- relaying: an offer or answer for a peer of another process is published on that process's
  channel `{prefix}process:{id}` as `{"from", "info_hash", "to_peer_id", "message"}`.

An announce reads its swarm's hash first (one HGETALL) so that the book can pick offer
recipients among every process's peers.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as redis

from core.p2p.locality import Location
from core.p2p.swarm import ForgetPeer, Forward, Forwarded, RecordPeer, RemotePeer

log = logging.getLogger(__name__)


class Cluster:
    def __init__(self, url: str, prefix: str, process: str, member_ttl: float) -> None:
        self.process = process
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._prefix = prefix
        self._ttl = member_ttl
        self._listener: asyncio.Task[None] | None = None

    def _swarm_key(self, info_hash: str) -> str:
        return f"{self._prefix}swarm:{info_hash}"

    def _channel(self, process: str) -> str:
        return f"{self._prefix}process:{process}"

    async def start(self, deliver: Callable[[Forwarded], Awaitable[None]]) -> None:
        """Subscribe to this process's channel; `deliver` gets each message relayed to it."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel(self.process))
        self._listener = asyncio.create_task(self._listen(pubsub, deliver))

    async def _listen(
        self, pubsub: redis.client.PubSub, deliver: Callable[[Forwarded], Awaitable[None]]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for item in pubsub.listen():
                try:
                    body = json.loads(item["data"])
                    event = Forwarded(
                        str(body["from"]),
                        str(body["info_hash"]),
                        str(body["to_peer_id"]),
                        dict(body["message"]),
                        loop.time(),
                    )
                except (ValueError, KeyError, TypeError) as error:
                    log.warning("cluster: dropped a malformed relay: %r", error)
                    continue
                await deliver(event)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def remote_peers(self, info_hash: str) -> tuple[RemotePeer, ...]:
        """The swarm's live members on other processes."""
        fields = await self._redis.hgetall(self._swarm_key(info_hash))
        now, peers = time.time(), []
        for peer_id, raw in fields.items():
            process, expires, pop, asn, country, region, seeder = json.loads(raw)
            if process != self.process and expires > now:
                location = Location(pop, asn, country, region)
                peers.append(RemotePeer(str(peer_id), process, location, bool(seeder)))
        return tuple(peers)

    async def record(self, command: RecordPeer) -> None:
        location = command.location
        value = [
            self.process,
            time.time() + self._ttl,
            location.pop,
            location.asn,
            location.country,
            location.region,
            command.seeder,
        ]
        key = self._swarm_key(command.info_hash)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, command.peer_id, json.dumps(value))
            pipe.expire(key, int(self._ttl) + 1)
            await pipe.execute()

    async def forget(self, command: ForgetPeer) -> None:
        await self._redis.hdel(self._swarm_key(command.info_hash), command.peer_id)

    async def forward(self, command: Forward) -> None:
        body = {
            "from": self.process,
            "info_hash": command.info_hash,
            "to_peer_id": command.to_peer_id,
            "message": command.message,
        }
        await self._redis.publish(self._channel(command.process), json.dumps(body))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()
