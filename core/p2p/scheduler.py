"""The peer brain: for each segment of one rendition, HTTP or a peer, by deadline. Sans-IO.

The shell (``peer_sdk``) feeds events with the time (``handle(event, now)``), executes the
commands it gets back and arms one timer at ``next_deadline()`` (``on_timer(now)``). Policy,
after p2p-media-loader 2.3's hybrid loader (research notes section 1c) with Shoal's additions:

- **high-demand window**: a segment the player asked for, or that plays within
  ``high_demand_window`` seconds, comes over HTTP (the edge). It never waits on a peer: a peer
  download of it still in flight is cancelled when it enters the window.
- **P2P window**: segments further ahead, up to ``p2p_window``, come from peers that announced
  them, chosen at random weighted by measured bandwidth (unproven peers get
  ``unproven_share`` of the best, as p2pml does). A peer that times out or has no copy is not
  asked again for that segment; the segment waits for another peer or for the window.
- **integrity**: a segment is stored, announced and served only once its SHA-256 matches the
  origin's list. A peer's bad copy gets the peer reported and closed, and the segment fetched
  over HTTP at once.
- **bounds**: HTTP and P2P downloads in flight, upload slots, upload bytes/s (a token bucket),
  and stored bytes (``SegmentStore``).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.p2p import peer_session as ps
from core.p2p.integrity import IntegrityList
from core.p2p.segment_store import SegmentStore

_ROUNDING = 1e-6
"""Seconds added to a window-crossing timer so float rounding cannot land it just short."""


@dataclass(frozen=True)
class SegmentInfo:
    """One media segment: its VOD id (index in the playlist), URI and play interval."""

    segment_id: int
    uri: str
    start: float
    duration: float


@dataclass(frozen=True)
class SchedulerConfig:
    """Tunables; the defaults are p2pml 2.3's where it has one."""

    high_demand_window: float = 15.0
    """Seconds of media ahead of the playhead that always come over HTTP."""
    p2p_window: float = 60.0
    """Seconds of media ahead of the playhead that may be fetched from peers."""
    simultaneous_http: int = 2
    simultaneous_p2p: int = 3
    http_retries: int = 3
    """Failed HTTP attempts per segment before the player is told it failed."""
    upload_slots: int = 4
    """Peers served at once; a request beyond that gets ``SegmentAbsent``."""
    upload_rate: float | None = None
    """Upload bytes per second (None: unlimited)."""
    upload_burst: int = 256 * 1024
    memory_bytes: int = 256 << 20
    unproven_share: float = 0.1
    max_segment_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if not 0 <= self.high_demand_window <= self.p2p_window:
            raise ValueError("need 0 <= high_demand_window <= p2p_window")
        if min(self.simultaneous_http, self.simultaneous_p2p, self.http_retries) < 1:
            raise ValueError("simultaneous downloads and retries must be at least 1")
        if self.upload_slots < 0:
            raise ValueError("upload_slots must be non-negative")
        if self.upload_rate is not None and self.upload_rate <= 0:
            raise ValueError("upload_rate must be positive")
        if self.upload_burst < ps.MAX_CHUNK:
            raise ValueError(f"upload_burst must hold one {ps.MAX_CHUNK}-byte chunk")


# --- events (what happened) --------------------------------------------------------------


@dataclass(frozen=True)
class PlaybackAdvanced:
    """The playhead is at ``position`` seconds of media and moves at ``rate`` (0: paused)."""

    position: float
    rate: float = 1.0


@dataclass(frozen=True)
class SegmentWanted:
    """The player asked for this segment; answer with ``DeliverSegment`` or ``FailSegment``."""

    segment_id: int


@dataclass(frozen=True)
class PeerConnected:
    peer_id: str


@dataclass(frozen=True)
class PeerClosed:
    peer_id: str


@dataclass(frozen=True)
class PeerMessageReceived:
    peer_id: str
    data: bytes


@dataclass(frozen=True)
class PeerChannelDrained:
    """The peer's send buffer is low again: it may take the next upload chunk."""

    peer_id: str


@dataclass(frozen=True)
class HttpFetched:
    segment_id: int
    data: bytes


@dataclass(frozen=True)
class HttpFetchFailed:
    segment_id: int
    reason: str


Event = (
    PlaybackAdvanced
    | SegmentWanted
    | PeerConnected
    | PeerClosed
    | PeerMessageReceived
    | PeerChannelDrained
    | HttpFetched
    | HttpFetchFailed
)

# --- commands (what the shell must do) ---------------------------------------------------


@dataclass(frozen=True)
class SendToPeer:
    peer_id: str
    data: bytes


@dataclass(frozen=True)
class ClosePeer:
    peer_id: str
    reason: str


@dataclass(frozen=True)
class ReportPeer:
    """The peer served bytes that failed the integrity check: log it, count it."""

    peer_id: str
    segment_id: int
    reason: str


@dataclass(frozen=True)
class FetchHttp:
    segment_id: int
    uri: str


@dataclass(frozen=True)
class DeliverSegment:
    """Answer the player's request for the segment with these (verified or HTTP) bytes."""

    segment_id: int
    data: bytes


@dataclass(frozen=True)
class FailSegment:
    segment_id: int
    reason: str


Command = SendToPeer | ClosePeer | ReportPeer | FetchHttp | DeliverSegment | FailSegment


@dataclass
class PeerCounters:
    downloaded: int = 0
    uploaded: int = 0


@dataclass
class Stats:
    """Byte counters; the offload ratio is what P2P spared the edge."""

    http_bytes: int = 0
    p2p_bytes: int = 0
    uploaded_bytes: int = 0
    peers: dict[str, PeerCounters] = field(default_factory=dict)
    integrity_failures: int = 0
    peers_dropped: int = 0
    p2p_timeouts: int = 0
    p2p_aborted: int = 0
    """Peer downloads cancelled because the segment entered the high-demand window."""

    @property
    def offload_ratio(self) -> float:
        total = self.http_bytes + self.p2p_bytes
        return self.p2p_bytes / total if total else 0.0

    def peer(self, peer_id: str) -> PeerCounters:
        return self.peers.setdefault(peer_id, PeerCounters())


class _ByteBucket:
    """Token bucket over bytes: ``rate`` a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._at: float | None = None

    def _refill(self, now: float) -> None:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now if self._at is None else max(self._at, now)

    def take(self, n: int, now: float) -> bool:
        self._refill(now)
        if self._tokens < n:
            return False
        self._tokens -= n
        return True

    def ready_at(self, n: int, now: float) -> float:
        self._refill(now)
        return now + max(0.0, n - self._tokens) / self.rate


@dataclass
class _Peer:
    session: ps.PeerSession
    writable: bool = True
    bandwidth: float | None = None
    """Bytes per second of its last verified download (None: unproven)."""
    requested_at: float = 0.0


class Scheduler:
    """Loads one rendition's segments from the edge and from peers, and serves peers."""

    def __init__(
        self,
        segments: Sequence[SegmentInfo],
        integrity: IntegrityList,
        rng: random.Random,
        config: SchedulerConfig | None = None,
    ) -> None:
        if [s.segment_id for s in segments] != list(range(len(segments))):
            raise ValueError("segment ids must be the playlist indexes 0..n-1")
        self.config = config or SchedulerConfig()
        self.stats = Stats()
        self._segments = list(segments)
        self._starts = [s.start for s in segments]
        self._integrity = integrity
        self._rng = rng
        self._store = SegmentStore(self.config.memory_bytes)
        self._peers: dict[str, _Peer] = {}
        self._http: set[int] = set()
        self._p2p: dict[int, str] = {}
        self._wanted: set[int] = set()
        self._http_only: set[int] = set()
        self._http_failures: dict[int, int] = {}
        self._given_up: set[int] = set()
        self._not_kept: set[int] = set()
        """Fetched ahead but not stored (no room, or unverifiable): fetched again only when
        the player asks, else prefetching would loop."""
        self._tried: dict[int, set[str]] = {}
        self._position = 0.0
        self._position_at: float | None = None
        self._rate = 0.0
        self._announced: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())
        self._bucket = (
            _ByteBucket(self.config.upload_rate, self.config.upload_burst)
            if self.config.upload_rate is not None
            else None
        )
        self._deadline: float | None = None

    # --- the sans-IO interface ---------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Command]:
        """Feed one event; returns the commands to execute, in order."""
        out: list[Command] = []
        match event:
            case PlaybackAdvanced(position, rate):
                self._position, self._position_at, self._rate = position, now, rate
            case SegmentWanted(segment_id):
                out += self._segment_wanted(segment_id)
            case PeerConnected(peer_id):
                out += self._peer_connected(peer_id)
            case PeerClosed(peer_id):
                self._forget_peer(peer_id)
            case PeerMessageReceived(peer_id, data):
                peer = self._peers.get(peer_id)
                if peer is not None:
                    out += self._outcomes(peer_id, peer.session.message_received(data, now), now)
            case PeerChannelDrained(peer_id):
                if peer_id in self._peers:
                    self._peers[peer_id].writable = True
            case HttpFetched(segment_id, data):
                if segment_id in self._http:
                    self._http.discard(segment_id)
                    out += self._http_fetched(segment_id, data, now)
            case HttpFetchFailed(segment_id, _):
                if segment_id in self._http:
                    self._http.discard(segment_id)
                    out += self._http_failed(segment_id)
        return self._settle(out, now)

    def on_timer(self, now: float) -> list[Command]:
        """Expire peer downloads and re-plan (segments cross windows as the playhead moves)."""
        out: list[Command] = []
        for peer_id, peer in list(self._peers.items()):
            out += self._outcomes(peer_id, peer.session.on_timer(now), now)
        return self._settle(out, now)

    def next_deadline(self) -> float | None:
        """When ``on_timer`` must next be called (None: only events matter)."""
        return self._deadline

    # --- queries ----------------------------------------------------------------------

    @property
    def stored(self) -> frozenset[int]:
        return self._store.ids()

    @property
    def stored_bytes(self) -> int:
        return self._store.used

    @property
    def http_in_flight(self) -> frozenset[int]:
        return frozenset(self._http)

    @property
    def p2p_in_flight(self) -> dict[int, str]:
        return dict(self._p2p)

    def position(self, now: float) -> float:
        """The playhead, extrapolated from the last ``PlaybackAdvanced``."""
        if self._position_at is None:
            return self._position
        return self._position + max(0.0, now - self._position_at) * self._rate

    # --- event handlers ---------------------------------------------------------------

    def _segment_wanted(self, segment_id: int) -> list[Command]:
        if not 0 <= segment_id < len(self._segments):
            return [FailSegment(segment_id, "unknown segment")]
        data = self._store.get(segment_id)
        if data is not None:
            return [DeliverSegment(segment_id, data)]
        self._wanted.add(segment_id)
        self._given_up.discard(segment_id)
        self._http_failures.pop(segment_id, None)
        return []

    def _peer_connected(self, peer_id: str) -> list[Command]:
        session = ps.PeerSession(self._rng, max_segment_bytes=self.config.max_segment_bytes)
        self._peers[peer_id] = _Peer(session)
        self.stats.peer(peer_id)
        loaded, loading = self._announced
        return self._sends(peer_id, session.announce(loaded, loading))

    def _forget_peer(self, peer_id: str) -> None:
        peer = self._peers.pop(peer_id, None)
        if peer is not None and peer.session.downloading is not None:
            self._p2p.pop(peer.session.downloading, None)

    def _close_peer(self, peer_id: str, reason: str) -> list[Command]:
        self._forget_peer(peer_id)
        self.stats.peers_dropped += 1
        return [ClosePeer(peer_id, reason)]

    def _http_fetched(self, segment_id: int, data: bytes, now: float) -> list[Command]:
        uri = self._segments[segment_id].uri
        if self._integrity.covers(uri) and not self._integrity.verify(uri, data):
            return self._http_failed(segment_id)
        self.stats.http_bytes += len(data)
        self._http_failures.pop(segment_id, None)
        self._http_only.discard(segment_id)
        return self._accept(segment_id, data, now, shareable=self._integrity.covers(uri))

    def _http_failed(self, segment_id: int) -> list[Command]:
        """Count a failed or corrupt HTTP fetch; the next plan retries it, up to the limit."""
        failures = self._http_failures.get(segment_id, 0) + 1
        self._http_failures[segment_id] = failures
        if failures < self.config.http_retries:
            return []
        self._given_up.add(segment_id)
        self._http_only.discard(segment_id)
        if segment_id in self._wanted:
            self._wanted.discard(segment_id)
            return [FailSegment(segment_id, f"HTTP failed {failures} times")]
        return []

    def _accept(
        self, segment_id: int, data: bytes, now: float, *, shareable: bool
    ) -> list[Command]:
        """Keep a segment (if verified and it fits) and hand it to a waiting player."""
        stored = False
        if shareable:
            playhead = self._playhead_index(self.position(now))
            stored, _ = self._store.put(segment_id, data, playhead=playhead, starts=self._starts)
        if not stored and segment_id not in self._wanted:
            self._not_kept.add(segment_id)
        if segment_id in self._wanted:
            self._wanted.discard(segment_id)
            return [DeliverSegment(segment_id, data)]
        return []

    # --- peer session outcomes --------------------------------------------------------

    def _outcomes(self, peer_id: str, outcomes: list[ps.Outcome], now: float) -> list[Command]:
        out: list[Command] = []
        for outcome in outcomes:
            match outcome:
                case ps.Send(data):
                    out.append(SendToPeer(peer_id, data))
                case ps.UploadRequested():
                    out += self._upload_requested(peer_id, outcome)
                case ps.Downloaded(segment_id, data):
                    out += self._peer_downloaded(peer_id, segment_id, data, now)
                case ps.DownloadFailed(segment_id, reason):
                    self._p2p.pop(segment_id, None)
                    self._tried.setdefault(segment_id, set()).add(peer_id)
                    if reason == "timeout":
                        self.stats.p2p_timeouts += 1
                case ps.Misbehaved(reason):
                    out += self._close_peer(peer_id, reason)
        return out

    def _upload_requested(self, peer_id: str, request: ps.UploadRequested) -> list[Command]:
        session = self._peers[peer_id].session
        data = self._store.get(request.segment_id)
        busy = sum(p.session.uploading for p in self._peers.values())
        if data is None or request.byte_from > len(data) or busy >= self.config.upload_slots:
            return self._sends(peer_id, session.refuse(request))
        return self._sends(peer_id, session.start_upload(request, data[request.byte_from :]))

    def _peer_downloaded(
        self, peer_id: str, segment_id: int, data: bytes, now: float
    ) -> list[Command]:
        self._p2p.pop(segment_id, None)
        peer = self._peers[peer_id]
        uri = self._segments[segment_id].uri
        if not self._integrity.verify(uri, data):
            self.stats.integrity_failures += 1
            self._http_only.add(segment_id)
            report = ReportPeer(peer_id, segment_id, "SHA-256 mismatch")
            return [report, *self._close_peer(peer_id, "sent a segment that failed integrity")]
        elapsed = max(now - peer.requested_at, 1e-3)
        peer.bandwidth = len(data) / elapsed
        self.stats.p2p_bytes += len(data)
        self.stats.peer(peer_id).downloaded += len(data)
        return self._accept(segment_id, data, now, shareable=True)

    def _sends(self, peer_id: str, outcomes: list[ps.Outcome]) -> list[Command]:
        return [SendToPeer(peer_id, o.data) for o in outcomes if isinstance(o, ps.Send)]

    # --- planning ---------------------------------------------------------------------

    def _settle(self, out: list[Command], now: float) -> list[Command]:
        """After every event: plan downloads, feed uploads, announce changes, set the timer."""
        out += self._plan(now)
        out += self._pump_uploads(now)
        out += self._announce()
        self._deadline = self._compute_deadline(now)
        return out

    def _playhead_index(self, position: float) -> int:
        return max(0, bisect.bisect_right(self._starts, position) - 1)

    def _urgent(self, now: float) -> list[int]:
        """Segments that must come over HTTP now, most pressing first."""
        position = self.position(now)
        horizon = position + self.config.high_demand_window
        ahead = []
        for index in range(self._playhead_index(position), len(self._segments)):
            if self._starts[index] > horizon:
                break
            ahead.append(index)
        ahead = [i for i in ahead if i not in self._not_kept]
        ordered = sorted(self._wanted) + ahead + sorted(self._http_only)
        return [i for i in dict.fromkeys(ordered) if i not in self._given_up]

    def _plan(self, now: float) -> list[Command]:
        out: list[Command] = []
        for index in self._urgent(now):
            data = self._store.get(index)
            if data is not None:
                if index in self._wanted:
                    self._wanted.discard(index)
                    out.append(DeliverSegment(index, data))
                continue
            # With every HTTP slot busy a peer download already under way may go on: it is
            # taken over as soon as a slot frees.
            if index in self._http or len(self._http) >= self.config.simultaneous_http:
                continue
            if index in self._p2p:
                out += self._abort_p2p(index)
            self._http.add(index)
            out.append(FetchHttp(index, self._segments[index].uri))
        return out + self._plan_p2p(now)

    def _abort_p2p(self, index: int) -> list[Command]:
        peer_id = self._p2p.pop(index)
        self.stats.p2p_aborted += 1
        return self._sends(peer_id, self._peers[peer_id].session.cancel())

    def _plan_p2p(self, now: float) -> list[Command]:
        out: list[Command] = []
        position = self.position(now)
        low = position + self.config.high_demand_window
        high = position + self.config.p2p_window
        for index in range(self._playhead_index(position), len(self._segments)):
            if len(self._p2p) >= self.config.simultaneous_p2p or self._starts[index] > high:
                break
            if (
                self._starts[index] <= low
                or index in self._store
                or index in self._http
                or index in self._p2p
                or index in self._http_only
                or index in self._not_kept
                or not self._integrity.covers(self._segments[index].uri)
            ):
                continue
            peer_id = self._choose_peer(index)
            if peer_id is None:
                continue
            peer = self._peers[peer_id]
            peer.requested_at = now
            self._p2p[index] = peer_id
            out += self._sends(peer_id, peer.session.request(index, now))
        return out

    def _choose_peer(self, index: int) -> str | None:
        """Weighted random among idle peers holding the segment (p2pml ``p2p/loader.ts``)."""
        tried = self._tried.get(index, set())
        candidates = [
            (peer_id, peer)
            for peer_id, peer in self._peers.items()
            if peer.session.downloading is None
            and index in peer.session.loaded
            and peer_id not in tried
        ]
        if not candidates:
            return None
        best = max(peer.bandwidth or 0.0 for _, peer in candidates)
        unproven = best * self.config.unproven_share if best > 0 else 1.0
        weights = [peer.bandwidth or unproven for _, peer in candidates]
        return self._rng.choices([peer_id for peer_id, _ in candidates], weights)[0]

    def _pump_uploads(self, now: float) -> list[Command]:
        out: list[Command] = []
        for peer_id, peer in self._peers.items():
            session = peer.session
            if not (session.uploading and peer.writable):
                continue
            size = min(ps.MAX_CHUNK, session.upload_remaining())
            if self._bucket is not None and not self._bucket.take(size, now):
                continue
            outcomes, sent = session.next_chunk(size)
            peer.writable = sent == 0
            self.stats.uploaded_bytes += sent
            self.stats.peer(peer_id).uploaded += sent
            out += self._sends(peer_id, outcomes)
        return out

    def _announce(self) -> list[Command]:
        """Tell every peer when what is stored or being fetched over HTTP changed."""
        state = (self._store.ids(), frozenset(self._http))
        if state == self._announced:
            return []
        self._announced = state
        out: list[Command] = []
        for peer_id, peer in self._peers.items():
            out += self._sends(peer_id, peer.session.announce(*state))
        return out

    def _compute_deadline(self, now: float) -> float | None:
        times = [t for p in self._peers.values() if (t := p.session.next_deadline()) is not None]
        if self._bucket is not None:
            times += [
                self._bucket.ready_at(min(ps.MAX_CHUNK, p.session.upload_remaining()), now)
                for p in self._peers.values()
                if p.session.uploading and p.writable
            ]
        if self._rate > 0:
            position = self.position(now)
            for window in (self.config.high_demand_window, self.config.p2p_window):
                index = bisect.bisect_right(self._starts, position + window)
                if index < len(self._starts):
                    crossing = (self._starts[index] - position - window) / self._rate
                    times.append(now + crossing + _ROUNDING)
        return min(times, default=None)
