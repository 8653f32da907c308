"""A WebTorrent tracker client as p2p-media-loader 2.3 uses it (research notes section 1a).

One WebSocket carries every swarm the peer is in. Joining a swarm announces
``event: started`` with up to 5 SDP offers, each an aiortc ``RTCPeerConnection`` with one
ordered, reliable data channel labelled with 40 hex characters. Offers are not trickled: aiortc
finishes ICE gathering inside ``setLocalDescription``, so the SDP sent is complete, as
simple-peer's ``trickle: false``. The tracker relays each offer to another peer of the swarm,
whose answer comes back with the ``offer_id``; offers unanswered after ``OFFER_TTL`` are closed.
Offers relayed to us are answered with ``to_peer_id``. The peer re-announces (new offers, no
``event``) every ``interval`` the tracker asked for, and reconnects with back-off if the socket
drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

log = logging.getLogger(__name__)

OFFERS_PER_ANNOUNCE = 5
OFFER_TTL = 50.0
"""bittorrent-tracker's websocket client drops unanswered offers after 50 s."""
DEFAULT_INTERVAL = 30.0
"""The re-announce interval until the tracker names one (bittorrent-tracker: 30 s)."""
CONNECT_TIMEOUT = 15.0
"""Seconds an answered connection may take to open its data channel before it is given up."""
RECONNECT_BACKOFF = (1.0, 30.0)
"""First and largest pause between reconnection attempts (doubling)."""


class PeerChannel:
    """A connection's data channel, keeping the messages that arrive before anyone listens.

    The remote side may announce the moment its channel opens, before this side's handler is
    attached (pyee drops events nobody listens to): ``take_early`` hands those over.
    """

    def __init__(self, connection: RTCPeerConnection, channel: RTCDataChannel) -> None:
        self.connection = connection
        self.channel = channel
        self._early: list[bytes] = []
        channel.on("message", self._keep)

    def _keep(self, message: bytes | str) -> None:
        if isinstance(message, bytes):
            self._early.append(message)

    def take_early(self) -> list[bytes]:
        """Stop buffering; the messages received so far, in order."""
        self.channel.remove_listener("message", self._keep)
        early, self._early = self._early, []
        return early


Connected = Callable[[str, str, PeerChannel], Awaitable[None]]
"""Called with (info_hash, remote peer_id, open channel)."""


@dataclass
class _Offer:
    info_hash: str
    link: PeerChannel
    expiry: asyncio.TimerHandle | None = None


class TrackerClient:
    """Finds peers for the swarms it is asked to join and hands over their open channels."""

    def __init__(
        self,
        url: str,
        peer_id: str,
        on_connected: Connected,
        *,
        stats: Callable[[], tuple[int, int]] = lambda: (0, 0),
        offers: int = OFFERS_PER_ANNOUNCE,
    ) -> None:
        self.url = url
        self.peer_id = peer_id
        self._on_connected = on_connected
        self._stats = stats
        """(uploaded, downloaded) bytes, sent in every announce."""
        self._offer_count = offers
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._swarms: dict[str, asyncio.Task[None]] = {}
        self._intervals: dict[str, float] = {}
        self._announced: dict[str, asyncio.Event] = {}
        self._interval_changed: dict[str, asyncio.Event] = {}
        self._offers: dict[str, _Offer] = {}
        self._connections: set[RTCPeerConnection] = set()
        self._remotes: set[tuple[str, str]] = set()
        """(info_hash, peer_id) pairs connected or connecting: one connection per pair."""
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self._closing = False

    async def start(self) -> None:
        """Connect to the tracker (and keep reconnecting) in the background."""
        self._session = aiohttp.ClientSession()
        self._reader = asyncio.create_task(self._run())

    async def join(self, info_hash: str) -> None:
        """Announce into a swarm now and every interval after, until ``leave``."""
        if info_hash not in self._swarms:
            self._swarms[info_hash] = asyncio.create_task(self._announce_loop(info_hash))

    async def announced(self, info_hash: str) -> None:
        """Wait until the first announce into a joined swarm has been sent."""
        await self._announced.setdefault(info_hash, asyncio.Event()).wait()

    async def leave(self, info_hash: str) -> None:
        task = self._swarms.pop(info_hash, None)
        if task is not None:
            task.cancel()
            await self._send({**self._announce_fields(info_hash), "event": "stopped"})

    def forget(self, info_hash: str, remote: str) -> None:
        """The connection to ``remote`` ended: a new one may be made."""
        self._remotes.discard((info_hash, remote))

    async def close(self) -> None:
        self._closing = True
        for info_hash in list(self._swarms):
            with contextlib.suppress(Exception):
                await self.leave(info_hash)
        for offer_id in list(self._offers):
            self._drop_offer(offer_id)
        for task in [*self._tasks, *([self._reader] if self._reader else [])]:
            task.cancel()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        await asyncio.gather(*(pc.close() for pc in list(self._connections)))

    # --- the socket -------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._session is not None
        pause = RECONNECT_BACKOFF[0]
        while not self._closing:
            try:
                async with self._session.ws_connect(self.url, heartbeat=30.0) as ws:
                    self._ws = ws
                    self._connected.set()
                    pause = RECONNECT_BACKOFF[0]
                    async for frame in ws:
                        if frame.type == aiohttp.WSMsgType.TEXT:
                            await self._on_text(frame.data)
            except (aiohttp.ClientError, OSError) as error:
                log.warning("tracker %s: %s", self.url, error)
            self._ws = None
            self._connected.clear()
            if self._closing:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECONNECT_BACKOFF[1])

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed:
            return
        await self._ws.send_str(json.dumps(message))

    def _announce_fields(self, info_hash: str) -> dict[str, Any]:
        uploaded, downloaded = self._stats()
        return {
            "action": "announce",
            "info_hash": info_hash,
            "peer_id": self.peer_id,
            "numwant": self._offer_count,
            "uploaded": uploaded,
            "downloaded": downloaded,
        }

    async def _announce_loop(self, info_hash: str) -> None:
        event: str | None = "started"
        while True:
            await self._connected.wait()
            offers = []
            for _ in range(self._offer_count):
                offer_id, sdp = await self._make_offer(info_hash)
                offers.append({"offer": {"type": "offer", "sdp": sdp}, "offer_id": offer_id})
            message = {**self._announce_fields(info_hash), "offers": offers}
            if event is not None:
                message["event"] = event
            await self._send(message)
            self._announced.setdefault(info_hash, asyncio.Event()).set()
            event = None
            await self._pause(info_hash)

    async def _pause(self, info_hash: str) -> None:
        """Wait one interval; a new interval from the tracker restarts the wait, as
        bittorrent-tracker's ``setInterval`` does."""
        changed = self._interval_changed.setdefault(info_hash, asyncio.Event())
        while True:
            changed.clear()
            try:
                interval = self._intervals.get(info_hash, DEFAULT_INTERVAL)
                await asyncio.wait_for(changed.wait(), interval)
            except TimeoutError:
                return

    # --- offers and answers -----------------------------------------------------------

    async def _make_offer(self, info_hash: str) -> tuple[str, str]:
        connection = self._new_connection()
        channel = connection.createDataChannel(secrets.token_hex(20), ordered=True)
        await connection.setLocalDescription(await connection.createOffer())
        # bittorrent-tracker sends offer ids as 20 random bytes in a latin-1 "binary string".
        offer_id = secrets.token_bytes(20).decode("latin-1")
        offer = self._offers[offer_id] = _Offer(info_hash, PeerChannel(connection, channel))
        offer.expiry = asyncio.get_running_loop().call_later(OFFER_TTL, self._drop_offer, offer_id)
        return offer_id, connection.localDescription.sdp

    def _new_connection(self) -> RTCPeerConnection:
        # No ICE servers: aiortc would otherwise ask Google's STUN server.
        connection = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._connections.add(connection)
        return connection

    def _drop_offer(self, offer_id: str) -> None:
        offer = self._offers.pop(offer_id, None)
        if offer is not None:
            if offer.expiry is not None:
                offer.expiry.cancel()
            self._close_later(offer.link.connection)

    def _close_later(self, connection: RTCPeerConnection) -> None:
        self._connections.discard(connection)
        asyncio.get_running_loop().create_task(connection.close())

    async def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            log.warning("tracker sent non-JSON: %.80r", text)
            return
        if not isinstance(message, dict):
            return
        if "failure reason" in message:
            log.warning("tracker failure: %s", message["failure reason"])
            return
        if "warning message" in message:
            log.info("tracker warning: %s", message["warning message"])
        info_hash = message.get("info_hash")
        if not isinstance(info_hash, str) or info_hash not in self._swarms:
            return
        interval = message.get("interval")
        if isinstance(interval, int | float) and interval > 0:
            self._set_interval(info_hash, float(interval))
        remote = message.get("peer_id")
        offer_id = message.get("offer_id")
        if not isinstance(remote, str) or not isinstance(offer_id, str) or remote == self.peer_id:
            return
        # Connecting takes up to CONNECT_TIMEOUT: never hold up the socket's reader for it.
        if isinstance(message.get("offer"), dict):
            self._spawn(self._answer(info_hash, remote, offer_id, message["offer"]))
        elif isinstance(message.get("answer"), dict):
            self._spawn(self._answered(info_hash, remote, offer_id, message["answer"]))

    def _set_interval(self, info_hash: str, interval: float) -> None:
        if self._intervals.get(info_hash) != interval:
            self._intervals[info_hash] = interval
            self._interval_changed.setdefault(info_hash, asyncio.Event()).set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, info_hash: str, remote: str, offer_id: str, offer: dict[str, Any]
    ) -> None:
        """Accept a relayed offer: answer it, and wait for the offerer's data channel."""
        if (info_hash, remote) in self._remotes or not isinstance(offer.get("sdp"), str):
            return
        self._remotes.add((info_hash, remote))
        connection = self._new_connection()
        opened: asyncio.Future[PeerChannel] = asyncio.get_running_loop().create_future()

        @connection.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if not opened.done():
                opened.set_result(PeerChannel(connection, channel))

        try:
            await connection.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await connection.setLocalDescription(await connection.createAnswer())
        except (ValueError, AssertionError) as error:  # aiortc's verdicts on a bad SDP
            log.info("bad offer from %s: %s", remote, error)
            self._give_up(info_hash, remote, connection)
            return
        await self._send(
            {
                "action": "announce",
                "info_hash": info_hash,
                "peer_id": self.peer_id,
                "to_peer_id": remote,
                "offer_id": offer_id,
                "answer": {"type": "answer", "sdp": connection.localDescription.sdp},
            }
        )
        try:
            link = await asyncio.wait_for(opened, CONNECT_TIMEOUT)
        except TimeoutError:
            self._give_up(info_hash, remote, connection)
            return
        await self._hand_over(info_hash, remote, link)

    async def _answered(
        self, info_hash: str, remote: str, offer_id: str, answer: dict[str, Any]
    ) -> None:
        offer = self._offers.pop(offer_id, None)
        if offer is None or offer.info_hash != info_hash:
            return
        if offer.expiry is not None:
            offer.expiry.cancel()
        link = offer.link
        if (info_hash, remote) in self._remotes or not isinstance(answer.get("sdp"), str):
            self._close_later(link.connection)
            return
        self._remotes.add((info_hash, remote))
        try:
            await link.connection.setRemoteDescription(
                RTCSessionDescription(answer["sdp"], "answer")
            )
        except (ValueError, AssertionError) as error:
            log.info("bad answer from %s: %s", remote, error)
            self._give_up(info_hash, remote, link.connection)
            return
        if link.channel.readyState != "open":
            opened = asyncio.Event()
            link.channel.on("open", opened.set)
            try:
                await asyncio.wait_for(opened.wait(), CONNECT_TIMEOUT)
            except TimeoutError:
                self._give_up(info_hash, remote, link.connection)
                return
        await self._hand_over(info_hash, remote, link)

    def _give_up(self, info_hash: str, remote: str, connection: RTCPeerConnection) -> None:
        self.forget(info_hash, remote)
        self._close_later(connection)

    async def _hand_over(self, info_hash: str, remote: str, link: PeerChannel) -> None:
        if info_hash not in self._swarms:
            self._give_up(info_hash, remote, link.connection)
            return
        log.info("connected to peer %s in swarm %s", remote, info_hash)
        await self._on_connected(info_hash, remote, link)
