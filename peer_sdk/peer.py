"""A Shoal viewer's peer: joins each rendition's swarm and plays it from peers and the edge.

    peer = Peer("http://edge:8080", "ws://tracker:8100/")
    await peer.start()
    result = await peer.play("sample-testsrc", rendition="360p", speed=4.0)
    print(peer.stats()["offload_ratio"])
    await peer.close()

Every rendition opened gets its own ``core.p2p.scheduler.Scheduler`` run by a ``StreamRunner``
and its own swarm, named as p2p-media-loader 2.3 names it for a player configured with
``swarmId = video_swarm_id(video_id)``, so browser players and Python peers meet.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from core.p2p import integrity as integrity_list
from core.p2p import scheduler as brain
from core.p2p.swarm_id import new_peer_id, video_swarms
from manifests.parse import parse_master, parse_media
from peer_sdk.stream import StreamRunner
from peer_sdk.tracker_client import PeerChannel, TrackerClient

log = logging.getLogger(__name__)

INTEGRITY_LIST = "integrity.json"
MASTER_PLAYLIST = "master.m3u8"


@dataclass(frozen=True)
class Rendition:
    """One variant of a video, resolved from its master and media playlists."""

    video_id: str
    name: str
    """The variant's directory (``360p`` for ``360p/index.m3u8``): what callers choose by."""
    info_hash: str
    media_url: str
    segments: tuple[brain.SegmentInfo, ...]
    init_uri: str | None


@dataclass(frozen=True)
class PlayResult:
    segments: int
    bytes: int
    sha256: str
    """Of every media segment played, in order: what a player would have decoded."""
    stalls: int
    stall_seconds: float


class Peer:
    """The programmatic peer: streams, the tracker connection and the counters."""

    def __init__(
        self,
        edge_url: str,
        tracker_url: str | None,
        *,
        config: brain.SchedulerConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.edge_url = edge_url.rstrip("/")
        self.config = config or brain.SchedulerConfig()
        self._rng = rng or random.Random()
        self.peer_id = new_peer_id(self._rng)
        self._http: aiohttp.ClientSession | None = None
        self._tracker = (
            TrackerClient(tracker_url, self.peer_id, self._connected, stats=self._tracker_stats)
            if tracker_url
            else None
        )
        self._streams: dict[tuple[str, str], StreamRunner] = {}
        self._renditions: dict[tuple[str, str], Rendition] = {}
        self._by_hash: dict[str, StreamRunner] = {}
        self._opening: dict[tuple[str, str | None], asyncio.Task[Rendition]] = {}

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("Peer.start() first")
        return self._http

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        if self._tracker is not None:
            await self._tracker.start()

    async def close(self) -> None:
        if self._tracker is not None:
            await self._tracker.close()
        for runner in self._streams.values():
            await runner.close()
        if self._http is not None:
            await self._http.close()

    # --- streams ----------------------------------------------------------------------

    async def open(self, video_id: str, rendition: str | None = None) -> Rendition:
        """Resolve a rendition (default: the master's first variant), start its brain, join
        its swarm. Opening the same rendition again returns the running one."""
        key = (video_id, rendition)
        task = self._opening.get(key)
        if task is None:
            task = self._opening[key] = asyncio.create_task(self._open(video_id, rendition))
        try:
            return await task
        except BaseException:
            self._opening.pop(key, None)
            raise

    def runner(self, video_id: str, rendition: str) -> StreamRunner | None:
        return self._streams.get((video_id, rendition))

    def rendition(self, video_id: str, rendition: str) -> Rendition | None:
        return self._renditions.get((video_id, rendition))

    async def _open(self, video_id: str, wanted: str | None) -> Rendition:
        master_url = f"{self.edge_url}/v/{video_id}/{MASTER_PLAYLIST}"
        master = parse_master(await self._get_text(master_url))
        swarms = video_swarms(video_id, master)
        chosen = next(
            (s for s in swarms if wanted is None or wanted in (s.uri, _directory(s.uri))), None
        )
        if chosen is None:
            raise LookupError(f"{video_id} has no rendition {wanted!r}")
        name = _directory(chosen.uri)
        if (video_id, name) in self._renditions:
            return self._renditions[(video_id, name)]
        media_url = str(URL(master_url).join(URL(chosen.uri)))
        media = parse_media(await self._get_text(media_url))
        segments, start = [], 0.0
        for index, segment in enumerate(media.segments):
            segments.append(brain.SegmentInfo(index, segment.uri, start, segment.duration))
            start += segment.duration
        integrity = await self._integrity(str(URL(media_url).join(URL(INTEGRITY_LIST))))
        scheduler = brain.Scheduler(segments, integrity, self._rng, self.config)
        base = str(URL(media_url).join(URL(".")))
        runner = StreamRunner(
            scheduler,
            base,
            self.http,
            on_peer_gone=lambda remote: self._peer_gone(chosen.info_hash, remote),
        )
        result = Rendition(
            video_id,
            name,
            chosen.info_hash,
            media_url,
            tuple(segments),
            media.init.uri if media.init else None,
        )
        self._streams[(video_id, name)] = runner
        self._renditions[(video_id, name)] = result
        self._by_hash[chosen.info_hash] = runner
        if self._tracker is not None:
            await self._tracker.join(chosen.info_hash)
        return result

    async def _get_text(self, url: str) -> str:
        async with self.http.get(url) as response:
            response.raise_for_status()
            return await response.text()

    async def _integrity(self, url: str) -> integrity_list.IntegrityList:
        """The rendition's integrity list; without one nothing can be verified or shared."""
        try:
            async with self.http.get(url) as response:
                response.raise_for_status()
                return integrity_list.parse_integrity(await response.read())
        except (aiohttp.ClientError, integrity_list.IntegrityError) as error:
            log.warning("no usable integrity list at %s (%s): HTTP only", url, error)
            return integrity_list.EMPTY

    async def _connected(self, info_hash: str, remote: str, link: PeerChannel) -> None:
        runner = self._by_hash.get(info_hash)
        if runner is None:
            await link.connection.close()
            return
        runner.add_peer(remote, link)

    def _peer_gone(self, info_hash: str, remote: str) -> None:
        if self._tracker is not None:
            self._tracker.forget(info_hash, remote)

    async def wait_for_peers(self, count: int, timeout: float) -> bool:
        """Wait until the open streams have connected ``count`` peers in all (a peer dropped
        at once still counts: it was found); False on timeout."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while sum(r.connections for r in self._streams.values()) < count:
            if loop.time() >= end:
                return False
            await asyncio.sleep(0.05)
        return True

    # --- playing ----------------------------------------------------------------------

    async def play(
        self,
        video_id: str,
        rendition: str | None = None,
        *,
        speed: float = 1.0,
        lead: float = 4.0,
    ) -> PlayResult:
        """Play a rendition without a player: request each segment ``lead`` seconds of media
        before it plays, the clock running ``speed`` times real time from the first segment
        on; a segment arriving after its play time is a stall (the clock waits for it)."""
        info = await self.open(video_id, rendition)
        runner = self._streams[(video_id, info.name)]
        if info.init_uri is not None:
            await self._get_bytes(str(URL(info.media_url).join(URL(info.init_uri))))
        loop = asyncio.get_running_loop()
        started: float | None = None
        played = hashlib.sha256()
        total, stalls, stalled = 0, 0, 0.0
        for segment in info.segments:
            if started is None:
                runner.feed(brain.PlaybackAdvanced(0.0, rate=0.0))
            else:
                wake = started + (segment.start - lead) / speed
                await asyncio.sleep(max(0.0, wake - loop.time()))
                runner.feed(brain.PlaybackAdvanced((loop.time() - started) * speed, rate=speed))
            data = await runner.segment(segment.segment_id)
            played.update(data)
            total += len(data)
            now = loop.time()
            if started is None:
                started = now
                continue
            late = now - (started + segment.start / speed)
            if late > 0:
                stalls, stalled, started = stalls + 1, stalled + late, started + late
        return PlayResult(len(info.segments), total, played.hexdigest(), stalls, stalled)

    async def _get_bytes(self, url: str) -> bytes:
        async with self.http.get(url) as response:
            response.raise_for_status()
            return await response.read()

    # --- reporting --------------------------------------------------------------------

    def _tracker_stats(self) -> tuple[int, int]:
        stats = [r.scheduler.stats for r in self._streams.values()]
        return sum(s.uploaded_bytes for s in stats), sum(s.p2p_bytes for s in stats)

    def stats(self) -> dict[str, Any]:
        """Byte counters over every stream: edge vs peers, per peer, offload, uploads."""
        every = [(key, runner, runner.scheduler.stats) for key, runner in self._streams.items()]
        totals = {
            name: sum(getattr(s, name) for _, _, s in every)
            for name in (
                "http_bytes",
                "p2p_bytes",
                "uploaded_bytes",
                "integrity_failures",
                "peers_dropped",
                "p2p_timeouts",
            )
        }
        peers: dict[str, dict[str, int]] = {}
        for _, _, s in every:
            for peer_id, counters in s.peers.items():
                entry = peers.setdefault(peer_id, {"downloaded": 0, "uploaded": 0})
                entry["downloaded"] += counters.downloaded
                entry["uploaded"] += counters.uploaded
        received = totals["http_bytes"] + totals["p2p_bytes"]
        return {
            "peer_id": self.peer_id,
            **totals,
            "offload_ratio": totals["p2p_bytes"] / received if received else 0.0,
            "connected_peers": sum(len(runner.peers) for _, runner, _ in every),
            "peers": peers,
            "streams": [
                {
                    "video": video_id,
                    "rendition": name,
                    "http_bytes": s.http_bytes,
                    "p2p_bytes": s.p2p_bytes,
                    "offload_ratio": s.offload_ratio,
                    "connected_peers": len(runner.peers),
                    "stored_bytes": runner.scheduler.stored_bytes,
                }
                for (video_id, name), runner, s in every
            ],
        }


def _directory(uri: str) -> str:
    """``360p`` for ``360p/index.m3u8``; a URI without a directory names itself."""
    path = URL(uri).path
    return path.rsplit("/", 1)[0] if "/" in path else path
