"""`SwarmBook`: the WebTorrent tracker's decisions, as p2p-media-loader 2.3 relies on them.

Events in, commands out. The shell turns each WebSocket message into an event with
`decode_message` (or a `Refused` of its own: bad JSON, oversized, info_hash not allowed), feeds
it to `handle`, and executes the commands: `Send` a JSON object to a connection, `Forward` one
to a peer held by another tracker process, `RecordPeer`/`ForgetPeer` to mirror membership for
those processes. The book never sees a socket, a clock or the global random generator.

The wire semantics are bittorrent-tracker 11's (`lib/server/parse-websocket.js`, `server.js`,
`swarm.js`), which p2p-media-loader 2.3's client speaks:

- an announce gets `{action, interval, info_hash, complete, incomplete}` back; each of its
  offers (at most min(#offers, 82)) goes to a *different* other peer of the swarm, never to the
  sender, as `{action, offer, offer_id, peer_id: <sender>, info_hash}`;
- an answer (an announce carrying `answer` and `to_peer_id`) also refreshes the answerer's
  membership, is routed to the named peer as `{action, answer, offer_id, peer_id, info_hash}`,
  and gets no reply; an unknown `to_peer_id` is dropped (counted);
- `stopped`, a closed connection or silence for twice the interval removes the peer; a swarm
  left empty is forgotten;
- bad input gets `{"failure reason": ..., "info_hash"?, "action"?}` and changes nothing.

Beyond bittorrent-tracker: offers go to the nearest peers first (`core.p2p.locality`); a swarm
cap, per-address and per-swarm token buckets (`core.limits`) and a cap on the swarms one
connection joins. Strings are kept exactly as received (info_hash, peer ids and `offer_id` are
latin-1 "binary strings" that must round-trip unchanged). A scrape must name its info_hashes:
bittorrent-tracker's full scrape (no info_hash) would list every swarm to anyone, unbounded.
"""

import enum
import ipaddress
import random
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from core.config import TrackerConfig
from core.limits import RateLimiter
from core.p2p.locality import UNKNOWN, Location, nearest

ID_LENGTH = 20
"""info_hash and peer ids are 20-character strings (p2pml 2.3: base64 of 15 bytes)."""

MAX_OFFERS = 82
"""bittorrent-tracker's `MAX_ANNOUNCE_PEERS`: offers relayed per announce, at most."""

TIMEOUT_INTERVALS = 2
"""A peer silent for this many announce intervals is dropped (as wt-tracker does)."""

Message = dict[str, Any]
"""A JSON object as the shell decoded it (or will encode it)."""


class Reject(enum.Enum):
    """Why a message was refused; the value is the `failure reason` the client sees."""

    BAD_JSON = "invalid JSON"
    TOO_LARGE = "message too large"
    BAD_ACTION = "invalid action"
    BAD_INFO_HASH = "invalid info_hash"
    BAD_PEER_ID = "invalid peer_id"
    BAD_TO_PEER_ID = "invalid `to_peer_id` (required with `answer`)"
    BAD_OFFERS = "invalid offers"
    BAD_ANSWER = "invalid answer"
    BAD_EVENT = "invalid event"
    RATE_LIMITED = "rate limited"
    SWARM_FULL = "swarm full"
    TOO_MANY_SWARMS = "too many swarms on this connection"
    PEER_ID_IN_USE = "peer_id in use"
    NOT_ALLOWED = "info_hash not allowed"

    @property
    def label(self) -> str:
        """A metric label value: `swarm_full`, `rate_limited`, ..."""
        return self.name.lower()


# Events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    """A WebSocket connection `conn` (an id the shell never reuses) was accepted."""

    conn: int
    ip: str
    location: Location = UNKNOWN


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """Connection `conn` is gone: every peer it announced leaves its swarm."""

    conn: int


@dataclass(frozen=True, slots=True)
class RemotePeer:
    """A member of a swarm connected to another tracker process."""

    peer_id: str
    process: str
    location: Location = UNKNOWN
    seeder: bool = False


@dataclass(frozen=True, slots=True)
class Offer:
    offer: Message
    """`{"type": "offer", "sdp": ...}`, relayed as received."""
    offer_id: str


@dataclass(frozen=True, slots=True)
class Announced:
    """An announce without an answer (a join, an update, `completed` or `stopped`)."""

    conn: int
    info_hash: str
    peer_id: str
    event: str
    """`started`, `update` (no event), `completed` or `stopped`."""
    seeder: bool
    """The peer has everything (`left` is 0 or the event is `completed`)."""
    offers: tuple[Offer, ...]
    now: float
    remote: tuple[RemotePeer, ...] = ()
    """Members on other tracker processes (filled in by a clustered shell)."""


@dataclass(frozen=True, slots=True)
class Answered:
    """An announce carrying an SDP answer for `to_peer_id`'s offer `offer_id`."""

    conn: int
    info_hash: str
    peer_id: str
    to_peer_id: str
    answer: Message
    offer_id: str
    seeder: bool
    now: float


@dataclass(frozen=True, slots=True)
class Scraped:
    conn: int
    info_hashes: tuple[str, ...]
    now: float


@dataclass(frozen=True, slots=True)
class Refused:
    """A message refused before it reached the book (by `decode_message` or the shell)."""

    conn: int
    reason: Reject
    info_hash: str | None = None
    action: str | None = None


@dataclass(frozen=True, slots=True)
class Forwarded:
    """Another tracker process relays `message` (an offer or an answer) to local `to_peer_id`;
    the sender (`message["peer_id"]`) is reachable through `process`."""

    process: str
    info_hash: str
    to_peer_id: str
    message: Message
    now: float


@dataclass(frozen=True, slots=True)
class Ticked:
    """Time passed: drop silent peers and stale routes (see `SwarmBook.next_deadline`)."""

    now: float


Event = (
    ConnectionOpened
    | ConnectionClosed
    | Announced
    | Answered
    | Scraped
    | Refused
    | Forwarded
    | Ticked
)


# Commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send `message` as a JSON text frame on connection `conn`."""

    conn: int
    message: Message


@dataclass(frozen=True, slots=True)
class Forward:
    """Hand `message` to tracker process `process`, for its peer `to_peer_id`."""

    process: str
    info_hash: str
    to_peer_id: str
    message: Message


@dataclass(frozen=True, slots=True)
class RecordPeer:
    """The peer joined or refreshed its membership: tell the other processes."""

    info_hash: str
    peer_id: str
    location: Location
    seeder: bool


@dataclass(frozen=True, slots=True)
class ForgetPeer:
    """The peer left the swarm: tell the other processes."""

    info_hash: str
    peer_id: str


Command = Send | Forward | RecordPeer | ForgetPeer


# Decoding ----------------------------------------------------------------------------------

_EVENTS = frozenset({"started", "update", "completed", "stopped"})
"""Announce events; bittorrent-tracker's client sends none for an update."""


def _is_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == ID_LENGTH


def _is_sdp(value: object, kind: str) -> bool:
    return (
        isinstance(value, dict) and value.get("type") == kind and isinstance(value.get("sdp"), str)
    )


def _offers(value: object) -> tuple[Offer, ...] | None:
    """The offers of an announce, None when malformed (absent is none at all)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        return None
    offers = []
    for item in value:
        if not (
            isinstance(item, dict)
            and _is_sdp(item.get("offer"), "offer")
            and isinstance(item.get("offer_id"), str)
        ):
            return None
        offers.append(Offer(item["offer"], item["offer_id"]))
    return tuple(offers)


def _seeder(message: Mapping[str, Any], event: str) -> bool:
    # p2pml never sends `left`, so its peers are all leechers, as bittorrent-tracker counts them.
    left = message.get("left")
    return event == "completed" or (type(left) in (int, float) and left == 0)


def decode_message(
    conn: int, message: object, now: float
) -> Announced | Answered | Scraped | Refused:
    """Check a decoded JSON message as bittorrent-tracker's `parse-websocket.js` does."""
    if not isinstance(message, dict):
        return Refused(conn, Reject.BAD_JSON)
    action = message.get("action")
    info_hash = message.get("info_hash")
    known_hash = info_hash if isinstance(info_hash, str) else None
    if action == "scrape":
        hashes = [info_hash] if isinstance(info_hash, str) else info_hash
        if not isinstance(hashes, list) or not hashes or not all(_is_id(h) for h in hashes):
            return Refused(conn, Reject.BAD_INFO_HASH, known_hash, "scrape")
        return Scraped(conn, tuple(hashes), now)
    if action != "announce":
        return Refused(conn, Reject.BAD_ACTION, known_hash)

    def refuse(reason: Reject) -> Refused:
        return Refused(conn, reason, known_hash, "announce")

    peer_id = message.get("peer_id")
    if not _is_id(info_hash):
        return refuse(Reject.BAD_INFO_HASH)
    if not _is_id(peer_id):
        return refuse(Reject.BAD_PEER_ID)
    event = message.get("event") or "update"
    if not isinstance(event, str) or event not in _EVENTS:
        return refuse(Reject.BAD_EVENT)
    seeder = _seeder(message, event)
    if "answer" in message:
        if not _is_id(message.get("to_peer_id")):
            return refuse(Reject.BAD_TO_PEER_ID)
        answer, offer_id = message["answer"], message.get("offer_id")
        if not _is_sdp(answer, "answer") or not isinstance(offer_id, str):
            return refuse(Reject.BAD_ANSWER)
        return Answered(
            conn, info_hash, peer_id, message["to_peer_id"], answer, offer_id, seeder, now
        )
    offers = _offers(message.get("offers"))
    if offers is None:
        return refuse(Reject.BAD_OFFERS)
    return Announced(conn, info_hash, peer_id, event, seeder, offers, now)


def failure(reason: Reject, info_hash: str | None = None, action: str | None = None) -> Message:
    """The `failure reason` reply, with the info_hash and action when they are known."""
    message: Message = {"failure reason": reason.value}
    if info_hash is not None:
        message["info_hash"] = info_hash
    if action is not None:
        message["action"] = action
    return message


# The book ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Peer:
    conn: int
    seeder: bool


@dataclass(slots=True)
class _Swarm:
    peers: dict[str, _Peer] = field(default_factory=dict)
    seeders: int = 0
    downloaded: int = 0
    """`completed` events seen (scrape's `downloaded`)."""


@dataclass(slots=True)
class _Connection:
    ip: str
    location: Location
    swarms: dict[str, str] = field(default_factory=dict)
    """info_hash -> the peer id this connection announced in it."""


@dataclass(slots=True)
class Counters:
    """Totals since start, for the shell's metrics (gauges are `peer_count`/`swarm_count`)."""

    announces: int = 0
    offers_relayed: int = 0
    answers_relayed: int = 0
    answers_dropped: int = 0
    """Answers whose `to_peer_id` is in no swarm this process knows."""
    forwards_dropped: int = 0
    """Messages from other processes for a peer that has left."""
    peers_expired: int = 0
    rejects: Counter[Reject] = field(default_factory=Counter)


class SwarmBook:
    """Swarm membership of one tracker process, and where each offer and answer goes."""

    def __init__(self, config: TrackerConfig, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        self._interval = config.announce_interval
        self._timeout = float(TIMEOUT_INTERVALS * config.announce_interval)
        self._swarms: dict[str, _Swarm] = {}
        self._connections: dict[int, _Connection] = {}
        # (info_hash, peer_id) -> last announce, oldest first: expiry pops from the front.
        self._last_seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        # (info_hash, peer_id) of a peer on another process -> (process, expiry), oldest first.
        self._routes: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._ip_limit = (
            RateLimiter(config.ip_rate, config.ip_burst) if config.ip_rate > 0 else None
        )
        self._swarm_limit = (
            RateLimiter(config.swarm_rate, config.swarm_burst) if config.swarm_rate > 0 else None
        )
        self._peer_count = 0
        self.counters = Counters()

    # Queries ---------------------------------------------------------------------------

    @property
    def peer_count(self) -> int:
        """Memberships held: a peer in two swarms counts twice."""
        return self._peer_count

    @property
    def swarm_count(self) -> int:
        return len(self._swarms)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def members(self, info_hash: str) -> dict[str, int]:
        """peer_id -> connection of every local member of the swarm (empty if none)."""
        swarm = self._swarms.get(info_hash)
        return {} if swarm is None else {pid: peer.conn for pid, peer in swarm.peers.items()}

    def swarms_of(self, conn: int) -> dict[str, str]:
        """info_hash -> peer_id of every swarm connection `conn` is in."""
        connection = self._connections.get(conn)
        return {} if connection is None else dict(connection.swarms)

    def info_hashes(self) -> list[str]:
        return list(self._swarms)

    def next_deadline(self) -> float | None:
        """When a `Ticked` next has something to do (None: nothing will expire)."""
        deadlines = []
        if self._last_seen:
            deadlines.append(next(iter(self._last_seen.values())) + self._timeout)
        if self._routes:
            deadlines.append(next(iter(self._routes.values()))[1])
        return min(deadlines, default=None)

    def stats(self) -> Message:
        """bittorrent-tracker's `/stats.json`, counting each peer id once across swarms.

        `clients` is `{client: {version: peers}}`, decoded from Azureus-style peer id prefixes
        (`-PM0203-` is p2p-media-loader 2.3); other ids count under `"unknown"`."""
        roles: dict[str, list[bool]] = {}  # peer_id -> [seeder somewhere, leecher somewhere]
        families: dict[str, bool] = {}  # peer_id -> connected over IPv6
        for swarm in self._swarms.values():
            for peer_id, peer in swarm.peers.items():
                role = roles.setdefault(peer_id, [False, False])
                role[0 if peer.seeder else 1] = True
                families.setdefault(peer_id, _is_ipv6(self._connections[peer.conn].ip))
        clients: dict[str, dict[str, int]] = {}
        for peer_id in roles:
            name, version = client_of(peer_id)
            versions = clients.setdefault(name, {})
            versions[version] = versions.get(version, 0) + 1
        ipv6 = sum(families.values())
        return {
            "torrents": len(self._swarms),
            "activeTorrents": len(self._swarms),
            "peersAll": len(roles),
            "peersSeederOnly": sum(1 for s, lee in roles.values() if s and not lee),
            "peersLeecherOnly": sum(1 for s, lee in roles.values() if lee and not s),
            "peersSeederAndLeecher": sum(1 for s, lee in roles.values() if s and lee),
            "peersIPv4": len(families) - ipv6,
            "peersIPv6": ipv6,
            "clients": clients,
        }

    # Events ----------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Command]:
        """Apply `event`; the commands to execute, in order."""
        match event:
            case Announced() | Answered():
                return self._on_announce(event)
            case Forwarded():
                return self._on_forwarded(event)
            case ConnectionOpened(conn, ip, location):
                self._connections[conn] = _Connection(ip, location)
                return []
            case ConnectionClosed(conn):
                connection = self._connections.pop(conn)
                return [self._remove(ih, pid) for ih, pid in list(connection.swarms.items())]
            case Scraped():
                return self._on_scrape(event)
            case Refused(conn, reason, info_hash, action):
                return [self._refuse(conn, reason, info_hash, action)]
            case Ticked(now):
                return self._expire(now)

    def _refuse(self, conn: int, reason: Reject, info_hash: str | None, action: str | None) -> Send:
        self.counters.rejects[reason] += 1
        return Send(conn, failure(reason, info_hash, action))

    def _rate_limited(self, conn: int, info_hash: str | None, now: float) -> bool:
        if self._ip_limit is not None and not self._ip_limit.allow(self._connections[conn].ip, now):
            return True
        return (
            self._swarm_limit is not None
            and info_hash is not None
            and not self._swarm_limit.allow(info_hash, now)
        )

    def _on_announce(self, event: Announced | Answered) -> list[Command]:
        conn, info_hash, peer_id = event.conn, event.info_hash, event.peer_id
        if self._rate_limited(conn, info_hash, event.now):
            return [self._refuse(conn, Reject.RATE_LIMITED, info_hash, "announce")]
        stopping = isinstance(event, Announced) and event.event == "stopped"
        remote = event.remote if isinstance(event, Announced) else ()
        commands: list[Command] = []
        swarm = self._swarms.get(info_hash)
        member = None if swarm is None else swarm.peers.get(peer_id)
        if member is not None and member.conn != conn:
            # A reconnecting player keeps its peer id (p2pml caches it per info_hash) and may
            # arrive before its old connection is found dead; from another address it would
            # steal the peer's answers.
            if self._connections[member.conn].ip != self._connections[conn].ip:
                return [self._refuse(conn, Reject.PEER_ID_IN_USE, info_hash, "announce")]
            commands.append(self._remove(info_hash, peer_id))
            member = None
        if stopping:
            if member is not None:
                commands.append(self._remove(info_hash, peer_id))
        elif member is None:
            refusal = self._join_refusal(conn, info_hash, remote)
            if refusal is not None:
                return [*commands, self._refuse(conn, refusal, info_hash, "announce")]
            commands.extend(self._join(conn, info_hash, peer_id))
        if not stopping:
            commands.append(self._refresh(conn, info_hash, peer_id, event))
        if isinstance(event, Answered):
            commands.extend(self._route_answer(event))
            return commands
        self.counters.announces += 1
        commands.append(Send(conn, self._reply(info_hash, remote)))
        if not stopping:
            commands.extend(self._relay_offers(event))
        return commands

    def _join_refusal(
        self, conn: int, info_hash: str, remote: tuple[RemotePeer, ...]
    ) -> Reject | None:
        connection = self._connections[conn]
        if (
            info_hash not in connection.swarms
            and len(connection.swarms) >= self._config.max_swarms_per_connection
        ):
            return Reject.TOO_MANY_SWARMS
        swarm = self._swarms.get(info_hash)
        local = {} if swarm is None else swarm.peers
        others = sum(1 for peer in remote if peer.peer_id not in local)
        if len(local) + others >= self._config.max_swarm_peers:
            return Reject.SWARM_FULL
        return None

    def _join(self, conn: int, info_hash: str, peer_id: str) -> list[Command]:
        """Add the peer; a connection that announced another id in this swarm gives it up."""
        connection = self._connections[conn]
        previous = connection.swarms.get(info_hash)
        commands: list[Command] = []
        if previous is not None:
            commands.append(self._remove(info_hash, previous))
        swarm = self._swarms.setdefault(info_hash, _Swarm())
        swarm.peers[peer_id] = _Peer(conn, seeder=False)
        connection.swarms[info_hash] = peer_id
        self._peer_count += 1
        return commands

    def _refresh(
        self, conn: int, info_hash: str, peer_id: str, event: Announced | Answered
    ) -> Command:
        swarm = self._swarms[info_hash]
        peer = swarm.peers[peer_id]
        if isinstance(event, Announced) and event.event == "completed":
            swarm.downloaded += 1
        if event.seeder and not peer.seeder:
            peer.seeder = True
            swarm.seeders += 1
        key = (info_hash, peer_id)
        self._last_seen[key] = event.now
        self._last_seen.move_to_end(key)
        return RecordPeer(info_hash, peer_id, self._connections[conn].location, peer.seeder)

    def _remove(self, info_hash: str, peer_id: str) -> ForgetPeer:
        swarm = self._swarms[info_hash]
        peer = swarm.peers.pop(peer_id)
        swarm.seeders -= peer.seeder
        self._peer_count -= 1
        connection = self._connections.get(peer.conn)
        if connection is not None:
            del connection.swarms[info_hash]
        self._last_seen.pop((info_hash, peer_id), None)
        if not swarm.peers:
            del self._swarms[info_hash]
        return ForgetPeer(info_hash, peer_id)

    def _reply(self, info_hash: str, remote: tuple[RemotePeer, ...]) -> Message:
        swarm = self._swarms.get(info_hash)
        local = {} if swarm is None else swarm.peers
        others = [peer for peer in remote if peer.peer_id not in local]
        complete = (0 if swarm is None else swarm.seeders) + sum(p.seeder for p in others)
        return {
            "action": "announce",
            "interval": self._interval,
            "info_hash": info_hash,
            "complete": complete,
            "incomplete": len(local) + len(others) - complete,
        }

    def _relay_offers(self, event: Announced) -> list[Command]:
        if not event.offers:
            return []
        info_hash, sender = event.info_hash, event.peer_id
        local = self._swarms[info_hash].peers
        candidates: list[tuple[tuple[str, _Peer | RemotePeer], Location]] = [
            ((peer_id, peer), self._connections[peer.conn].location)
            for peer_id, peer in local.items()
            if peer_id != sender
        ]
        candidates.extend(
            ((peer.peer_id, peer), peer.location)
            for peer in event.remote
            if peer.peer_id != sender and peer.peer_id not in local
        )
        origin = self._connections[event.conn].location
        count = min(len(event.offers), MAX_OFFERS)
        commands: list[Command] = []
        for offer, (peer_id, target) in zip(
            event.offers, nearest(origin, candidates, count, self._rng), strict=False
        ):
            message = {
                "action": "announce",
                "offer": offer.offer,
                "offer_id": offer.offer_id,
                "peer_id": sender,
                "info_hash": info_hash,
            }
            commands.append(self._deliver(info_hash, peer_id, target, message))
            self.counters.offers_relayed += 1
        return commands

    @staticmethod
    def _deliver(
        info_hash: str, peer_id: str, target: _Peer | RemotePeer | str, message: Message
    ) -> Command:
        """`Send` to a local peer, `Forward` to a peer on process `target` (or RemotePeer's)."""
        if isinstance(target, _Peer):
            return Send(target.conn, message)
        process = target if isinstance(target, str) else target.process
        return Forward(process, info_hash, peer_id, message)

    def _route_answer(self, event: Answered) -> list[Command]:
        info_hash, to_peer_id = event.info_hash, event.to_peer_id
        # An answer to oneself is nonsense: dropped, so that no relay returns to its sender.
        target: _Peer | str | None = None
        if to_peer_id != event.peer_id:
            target = self._swarms[info_hash].peers.get(to_peer_id)
            if target is None:
                route = self._routes.get((info_hash, to_peer_id))
                target = None if route is None else route[0]
        if target is None:
            self.counters.answers_dropped += 1
            return []
        self.counters.answers_relayed += 1
        message = {
            "action": "announce",
            "answer": event.answer,
            "offer_id": event.offer_id,
            "peer_id": event.peer_id,
            "info_hash": info_hash,
        }
        return [self._deliver(info_hash, to_peer_id, target, message)]

    def _on_forwarded(self, event: Forwarded) -> list[Command]:
        swarm = self._swarms.get(event.info_hash)
        peer = None if swarm is None else swarm.peers.get(event.to_peer_id)
        sender = event.message.get("peer_id")
        if peer is None or not _is_id(sender):
            self.counters.forwards_dropped += 1
            return []
        # The local peer may answer this offer: remember where its sender lives until the
        # offer is long dead (p2pml drops unanswered offers after 50 s).
        key = (event.info_hash, sender)
        self._routes[key] = (event.process, event.now + self._timeout)
        self._routes.move_to_end(key)
        return [Send(peer.conn, event.message)]

    def _on_scrape(self, event: Scraped) -> list[Command]:
        if self._rate_limited(event.conn, None, event.now):
            return [self._refuse(event.conn, Reject.RATE_LIMITED, None, "scrape")]
        files = {}
        for info_hash in event.info_hashes:
            swarm = self._swarms.get(info_hash) or _Swarm()
            files[info_hash] = {
                "complete": swarm.seeders,
                "incomplete": len(swarm.peers) - swarm.seeders,
                "downloaded": swarm.downloaded,
            }
        return [Send(event.conn, {"action": "scrape", "files": files})]

    def _expire(self, now: float) -> list[Command]:
        # Both tables are oldest first: the scans stop at the first entry still alive.
        commands: list[Command] = []
        while self._last_seen:
            (info_hash, peer_id), seen = next(iter(self._last_seen.items()))
            if seen + self._timeout > now:
                break
            commands.append(self._remove(info_hash, peer_id))  # pops it from _last_seen
            self.counters.peers_expired += 1
        while self._routes:
            key, (_, expiry) = next(iter(self._routes.items()))
            if expiry > now:
                break
            del self._routes[key]
        return commands


def client_of(peer_id: str) -> tuple[str, str]:
    """(client, version) from an Azureus-style peer id: `-PM0203-…` is p2p-media-loader 2.3."""
    if len(peer_id) >= 8 and peer_id[0] == "-" and peer_id[7] == "-" and peer_id[3:7].isdigit():
        name = _CLIENTS.get(peer_id[1:3], peer_id[1:3])
        if peer_id[1:3] == "PM":
            return name, f"{int(peer_id[3:5])}.{int(peer_id[5:7])}"
        return name, peer_id[3:7]
    return "unknown", ""


_CLIENTS = {"PM": "p2p-media-loader", "WW": "webtorrent", "WD": "webtorrent-desktop"}


def _is_ipv6(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None


__all__ = [
    "ID_LENGTH",
    "MAX_OFFERS",
    "Announced",
    "Answered",
    "Command",
    "ConnectionClosed",
    "ConnectionOpened",
    "Counters",
    "Event",
    "ForgetPeer",
    "Forward",
    "Forwarded",
    "Offer",
    "RecordPeer",
    "Refused",
    "Reject",
    "RemotePeer",
    "Scraped",
    "Send",
    "SwarmBook",
    "Ticked",
    "client_of",
    "decode_message",
    "failure",
]
