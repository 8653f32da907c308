"""A discrete-event harness for the peer brain: scripted peers, an edge and a player.

`Playback.run()` drives a `Scheduler` on a simulated clock the way the peer_sdk shell does:
events in with `now`, commands executed, one timer at `next_deadline()`. Scripted peers answer
over the p2pml wire codec after a latency; `behaviour` makes one good, silent, absent or corrupt.
After every step `check` (if given) is called with the playback, so property tests can assert
invariants at each instant rather than only at the end.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from core.p2p import wire
from core.p2p.integrity import IntegrityList, parse_integrity
from core.p2p.scheduler import (
    ClosePeer,
    Command,
    DeliverSegment,
    Event,
    FailSegment,
    FetchHttp,
    HttpFetched,
    PeerChannelDrained,
    PeerConnected,
    PeerMessageReceived,
    PlaybackAdvanced,
    ReportPeer,
    Scheduler,
    SchedulerConfig,
    SegmentInfo,
    SegmentWanted,
    SendToPeer,
)

Behaviour = Literal["good", "silent", "absent", "corrupt", "short"]


@dataclass(frozen=True)
class Video:
    segments: list[SegmentInfo]
    payloads: list[bytes]
    integrity: IntegrityList


def synthetic_video(count: int, duration: float = 2.0, size: int = 3000, seed: int = 0) -> Video:
    """`count` segments of distinct pseudo-random bytes and their integrity list."""
    rng = random.Random(seed)
    payloads = [rng.randbytes(size + rng.randrange(size // 2)) for _ in range(count)]
    segments = [SegmentInfo(i, f"seg_{i:05d}.m4s", i * duration, duration) for i in range(count)]
    listing = {
        "version": 1,
        "algorithm": "sha256",
        "segments": {
            s.uri: hashlib.sha256(p).hexdigest() for s, p in zip(segments, payloads, strict=True)
        },
    }
    return Video(segments, payloads, parse_integrity(json.dumps(listing).encode()))


@dataclass
class ScriptedPeer:
    """A remote peer holding `has`, answering requests per its `behaviour` after `latency`."""

    has: frozenset[int]
    behaviour: Behaviour = "good"
    latency: float = 0.05
    assembler: wire.CommandAssembler = field(default_factory=wire.CommandAssembler)
    closed: bool = False
    served: set[int] = field(default_factory=set)
    """Segments this peer sent with their true bytes."""

    def greeting(self) -> list[bytes]:
        return wire.encode(wire.SegmentsAnnouncement(tuple(sorted(self.has))))

    def receive(self, message: bytes, payloads: list[bytes]) -> list[bytes]:
        """Replies to one message from the brain (nothing unless it completes a request)."""
        if not wire.is_command(message):
            return []
        command = self.assembler.feed(message)
        if not isinstance(command, wire.SegmentRequest) or self.behaviour == "silent":
            return []
        i, r = command.segment_id, command.request_id
        if i not in self.has or self.behaviour == "absent":
            return wire.encode(wire.SegmentAbsent(i, r))
        data = payloads[i]
        if self.behaviour == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        else:
            self.served.add(i)
        size = len(data) + (7 if self.behaviour == "short" else 0)
        chunks = [data[n : n + 1000] for n in range(0, len(data), 1000)]
        return [
            *wire.encode(wire.SegmentData(i, r, size)),
            *chunks,
            *wire.encode(wire.SegmentDataSendingCompleted(i, r)),
        ]


@dataclass
class Playback:
    """A player requesting each segment `lead` seconds before it plays, from `startup` on."""

    video: Video
    peers: dict[str, ScriptedPeer]
    config: SchedulerConfig
    seed: int = 1
    http_latency: float = 0.2
    lead: float = 4.0
    startup: float = 1.0
    check: Callable[[Playback, float], None] | None = None

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(
            self.video.segments, self.video.integrity, random.Random(self.seed), self.config
        )
        self.log: list[tuple[float, Command]] = []
        self.delivered: dict[int, tuple[float, bytes]] = {}
        self.fetched: set[int] = set()
        """Segments the edge sent (with their true bytes)."""
        self._queue: list[tuple[float, int, Event]] = []
        self._seq = 0

    def true_bytes_received(self) -> set[int]:
        """Segments whose true bytes were sent to the brain: all it may ever announce."""
        return self.fetched.union(*(peer.served for peer in self.peers.values()))

    def deadline(self, segment_id: int) -> float:
        return self.startup + self.video.segments[segment_id].start

    def _at(self, when: float, event: Event) -> None:
        heapq.heappush(self._queue, (when, self._seq, event))
        self._seq += 1

    def run(self) -> None:
        self._at(0.0, PlaybackAdvanced(0.0, rate=0.0))
        self._at(self.startup, PlaybackAdvanced(0.0, rate=1.0))
        for peer_id, peer in self.peers.items():
            self._at(0.0, PeerConnected(peer_id))
            for message in peer.greeting():
                self._at(peer.latency, PeerMessageReceived(peer_id, message))
        for segment in self.video.segments:
            self._at(
                max(0.0, self.deadline(segment.segment_id) - self.lead),
                SegmentWanted(segment.segment_id),
            )
        end = self.deadline(len(self.video.segments) - 1) + 30.0
        while self._queue:
            timer = self.scheduler.next_deadline()
            if timer is not None and timer <= self._queue[0][0]:
                now = timer
                self._execute(self.scheduler.on_timer(now), now)
            else:
                now, _, event = heapq.heappop(self._queue)
                if isinstance(event, PeerMessageReceived) and self.peers[event.peer_id].closed:
                    continue
                if isinstance(event, HttpFetched):
                    self.fetched.add(event.segment_id)
                self._execute(self.scheduler.handle(event, now), now)
            assert now <= end, "playback did not finish"

    def _execute(self, commands: list[Command], now: float) -> None:
        for command in commands:
            self.log.append((now, command))
            if isinstance(command, SendToPeer):
                self._send(command, now)
            elif isinstance(command, FetchHttp):
                data = self.video.payloads[command.segment_id]
                self._at(now + self.http_latency, HttpFetched(command.segment_id, data))
            elif isinstance(command, DeliverSegment):
                assert command.segment_id not in self.delivered
                self.delivered[command.segment_id] = (now, command.data)
            elif isinstance(command, ClosePeer):
                self.peers[command.peer_id].closed = True
            else:
                assert isinstance(command, ReportPeer | FailSegment)
        if self.check is not None:
            self.check(self, now)

    def _send(self, command: SendToPeer, now: float) -> None:
        peer = self.peers[command.peer_id]
        if peer.closed:
            return
        if not wire.is_command(command.data):
            self._at(now, PeerChannelDrained(command.peer_id))
        for message in peer.receive(command.data, self.video.payloads):
            self._at(now + peer.latency, PeerMessageReceived(command.peer_id, message))


def announced_loaded(commands: list[tuple[float, Command]]) -> list[tuple[int, ...]]:
    """The `loaded` lists of every announcement the brain sent."""
    out = []
    for _, command in commands:
        if isinstance(command, SendToPeer) and wire.is_command(command.data):
            decoded = wire.decode(command.data[4:-4])
            if isinstance(decoded, wire.SegmentsAnnouncement):
                out.append(decoded.loaded)
    return out
