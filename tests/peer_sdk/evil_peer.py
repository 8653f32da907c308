"""A malicious peer for tests: joins a video's swarm, announces every segment and serves each
one with its first byte flipped. Run as `python -m tests.peer_sdk.evil_peer EDGE TRACKER VIDEO`;
prints `ready` once it is in the swarm."""

from __future__ import annotations

import asyncio
import logging
import random
import sys

from aiortc import RTCPeerConnection
from yarl import URL

from core.p2p import wire
from core.p2p.swarm_id import new_peer_id
from peer_sdk.peer import Peer
from peer_sdk.tracker_client import PeerChannel, TrackerClient


async def main(edge: str, tracker: str, video_id: str) -> None:
    fetcher = Peer(edge, None)
    await fetcher.start()
    info = await fetcher.open(video_id)
    corrupt = []
    for segment in info.segments:
        async with fetcher.http.get(URL(info.media_url).join(URL(segment.uri))) as response:
            data = await response.read()
        corrupt.append(bytes([data[0] ^ 0xFF]) + data[1:])
    connections: list[RTCPeerConnection] = []

    async def connected(info_hash: str, remote: str, link: PeerChannel) -> None:
        connections.append(link.connection)
        channel = link.channel
        assembler = wire.CommandAssembler()
        for message in wire.encode(wire.SegmentsAnnouncement(tuple(range(len(corrupt))))):
            channel.send(message)

        def on_message(message: bytes) -> None:
            if not wire.is_command(message):
                return
            command = assembler.feed(message)
            if isinstance(command, wire.SegmentRequest):
                i, r = command.segment_id, command.request_id
                data = corrupt[i]
                channel.send(wire.encode(wire.SegmentData(i, r, len(data)))[0])
                for n in range(0, len(data), 16_000):
                    channel.send(data[n : n + 16_000])
                channel.send(wire.encode(wire.SegmentDataSendingCompleted(i, r))[0])

        for message in link.take_early():
            on_message(message)
        channel.on("message", on_message)

    client = TrackerClient(tracker, new_peer_id(random.Random()), connected)
    await client.start()
    await client.join(info.info_hash)
    await client.announced(info.info_hash)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(main(*sys.argv[1:4]))
