"""The shell around one rendition's peer brain (``core.p2p.scheduler.Scheduler``).

It turns I/O into events (data-channel messages, edge responses, the player's requests, the
clock) and executes the brain's commands: messages to peers with back-pressure, HTTP fetches
from the edge, answers to the player. One timer is armed at the brain's ``next_deadline``.
Nothing here decides anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiortc import RTCDataChannel, RTCPeerConnection
from yarl import URL

from core.p2p import scheduler as brain
from core.p2p.peer_session import MAX_CHUNK
from core.p2p.wire import is_command
from peer_sdk.tracker_client import PeerChannel

log = logging.getLogger(__name__)

LOW_WATER = MAX_CHUNK
"""Send more only when the channel buffers at most one chunk (simple-peer: 64 KiB)."""


class SegmentUnavailable(Exception):
    """The brain gave up on a segment (the edge failed it repeatedly)."""


@dataclass
class _Link:
    connection: RTCPeerConnection
    channel: RTCDataChannel
    draining: bool = False


class StreamRunner:
    """Executes one ``Scheduler``: a rendition's segments from the edge and from peers."""

    def __init__(
        self,
        scheduler: brain.Scheduler,
        base_url: str,
        http: aiohttp.ClientSession,
        *,
        on_peer_gone: Callable[[str], None] = lambda peer_id: None,
    ) -> None:
        self.scheduler = scheduler
        self.base_url = base_url
        """URL of the media playlist's directory: segment URIs are relative to it."""
        self._http = http
        self._on_peer_gone = on_peer_gone
        self._loop = asyncio.get_running_loop()
        self._links: dict[str, _Link] = {}
        self._waiters: dict[int, list[asyncio.Future[bytes]]] = {}
        self._fetches: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.connections = 0
        """Peers attached since the start (some may be gone)."""
        self.reports: Counter[str] = Counter()
        """Integrity failures per peer id (``ReportPeer``)."""
        self.closed = False

    @property
    def peers(self) -> list[str]:
        return list(self._links)

    # --- events in --------------------------------------------------------------------

    def feed(self, event: brain.Event) -> None:
        if not self.closed:
            self._execute(self.scheduler.handle(event, self._loop.time()))

    def _on_timer(self) -> None:
        self._timer = None
        if not self.closed:
            self._execute(self.scheduler.on_timer(self._loop.time()))

    async def segment(self, segment_id: int) -> bytes:
        """The bytes of a segment the player wants (from storage, a peer or the edge)."""
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._waiters.setdefault(segment_id, []).append(future)
        self.feed(brain.SegmentWanted(segment_id))
        return await future

    def add_peer(self, peer_id: str, peer_channel: PeerChannel) -> None:
        """Attach an open data channel to a remote peer of this swarm."""
        connection, channel = peer_channel.connection, peer_channel.channel
        if peer_id in self._links or self.closed:
            self._loop.create_task(connection.close())
            return
        link = self._links[peer_id] = _Link(connection, channel)
        self.connections += 1
        channel.bufferedAmountLowThreshold = LOW_WATER
        early = peer_channel.take_early()

        @channel.on("message")
        def on_message(message: bytes | str) -> None:
            if isinstance(message, bytes) and peer_id in self._links:
                self.feed(brain.PeerMessageReceived(peer_id, message))

        @channel.on("bufferedamountlow")
        def on_low() -> None:
            if link.draining:
                link.draining = False
                self.feed(brain.PeerChannelDrained(peer_id))

        @channel.on("close")
        def on_close() -> None:
            self._drop_link(peer_id)
            self.feed(brain.PeerClosed(peer_id))

        @connection.on("connectionstatechange")
        def on_state() -> None:
            if connection.connectionState in ("failed", "closed"):
                on_close()

        self.feed(brain.PeerConnected(peer_id))
        for message in early:
            self.feed(brain.PeerMessageReceived(peer_id, message))

    # --- commands out -----------------------------------------------------------------

    def _execute(self, commands: list[brain.Command]) -> None:
        for command in commands:
            match command:
                case brain.SendToPeer(peer_id, data):
                    self._send(peer_id, data)
                case brain.FetchHttp(segment_id, uri):
                    task = self._loop.create_task(self._fetch(segment_id, uri))
                    self._fetches.add(task)
                    task.add_done_callback(self._fetches.discard)
                case brain.DeliverSegment(segment_id, data):
                    for future in self._waiters.pop(segment_id, []):
                        if not future.done():
                            future.set_result(data)
                case brain.FailSegment(segment_id, reason):
                    for future in self._waiters.pop(segment_id, []):
                        if not future.done():
                            future.set_exception(SegmentUnavailable(f"{segment_id}: {reason}"))
                case brain.ReportPeer(peer_id, segment_id, reason):
                    self.reports[peer_id] += 1
                    log.warning("peer %s sent bad segment %d: %s", peer_id, segment_id, reason)
                case brain.ClosePeer(peer_id, reason):
                    log.info("closing peer %s: %s", peer_id, reason)
                    link = self._drop_link(peer_id)
                    if link is not None:
                        self._loop.create_task(link.connection.close())
        self._arm_timer()

    def _send(self, peer_id: str, data: bytes) -> None:
        link = self._links.get(peer_id)
        if link is None or link.channel.readyState != "open":
            return
        link.channel.send(data)
        if is_command(data):
            return
        # A raw chunk: the brain sends the next one after PeerChannelDrained.
        if link.channel.bufferedAmount <= LOW_WATER:
            self._loop.call_soon(self.feed, brain.PeerChannelDrained(peer_id))
        else:
            link.draining = True

    async def _fetch(self, segment_id: int, uri: str) -> None:
        url = URL(self.base_url).join(URL(uri))
        try:
            async with self._http.get(url) as response:
                response.raise_for_status()
                data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            self.feed(brain.HttpFetchFailed(segment_id, str(error) or type(error).__name__))
            return
        self.feed(brain.HttpFetched(segment_id, data))

    def _arm_timer(self) -> None:
        deadline = self.scheduler.next_deadline()
        if self._timer is not None and (deadline is None or self._timer.when() != deadline):
            self._timer.cancel()
            self._timer = None
        if self._timer is None and deadline is not None and not self.closed:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _drop_link(self, peer_id: str) -> _Link | None:
        link = self._links.pop(peer_id, None)
        if link is not None:
            self._on_peer_gone(peer_id)
        return link

    async def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._fetches):
            task.cancel()
        for futures in self._waiters.values():
            for future in futures:
                future.cancel()
        links = [self._drop_link(peer_id) for peer_id in list(self._links)]
        for link in links:
            if link is not None:
                with contextlib.suppress(Exception):
                    await link.connection.close()
