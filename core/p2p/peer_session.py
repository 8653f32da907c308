"""One remote peer's side of the p2p-media-loader 2.3 wire protocol, sans-IO.

A ``PeerSession`` turns data-channel messages into ``Outcome``s for the scheduler and turns the
scheduler's decisions (request, cancel, serve, refuse) into messages to send. It holds the
p2pml rules (research notes section 1b, ``peer.ts``):

- one download and one upload in flight; a new request from the peer aborts its current upload;
- a download is a ``SegmentData`` header, raw chunks, then ``SegmentDataSendingCompleted``;
  a wrong byte count or mismatched ids cancel the request and condemn the peer (``Misbehaved``);
- no bytes for ``RECEIVE_TIMEOUT`` seconds cancels the request; ``MAX_TIMEOUTS`` condemn the peer.

Stale replies to a request this side cancelled are expected on an ordered channel (the peer
had them in flight) and are ignored rather than held against the peer.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from core.p2p import wire

RECEIVE_TIMEOUT = 2.0
"""p2pml ``p2pNotReceivingBytesTimeoutMs``: seconds without bytes before a download is given up."""
MAX_TIMEOUTS = 3
"""Receive timeouts after which the peer is dropped (p2pml: 3)."""
MAX_CHUNK = 65535
"""Largest raw data message: p2pml's ``webRtcMaxMessageSize``."""
_REMEMBERED_CANCELS = 8


@dataclass(frozen=True)
class Send:
    """Send this message on the peer's data channel."""

    data: bytes


@dataclass(frozen=True)
class Announced:
    """The peer announced what it stores (``loaded``) and fetches over HTTP (``loading``)."""

    loaded: frozenset[int]
    loading: frozenset[int]


@dataclass(frozen=True)
class UploadRequested:
    """The peer asks for a segment; answer with ``start_upload`` or ``refuse``."""

    segment_id: int
    request_id: int
    byte_from: int


@dataclass(frozen=True)
class Downloaded:
    """The requested segment arrived whole (not yet verified: the scheduler does that)."""

    segment_id: int
    data: bytes


@dataclass(frozen=True)
class DownloadFailed:
    """The requested segment will not come from this peer (``absent`` or ``timeout``)."""

    segment_id: int
    reason: str


@dataclass(frozen=True)
class Misbehaved:
    """The peer broke the protocol or timed out too often: close it."""

    reason: str


Outcome = Send | Announced | UploadRequested | Downloaded | DownloadFailed | Misbehaved


@dataclass
class _Download:
    segment_id: int
    request_id: int
    deadline: float
    total: int | None = None
    received: int = 0
    chunks: list[bytes] = field(default_factory=list)


@dataclass
class _Upload:
    segment_id: int
    request_id: int
    data: bytes
    sent: int = 0


class PeerSession:
    """Protocol state for one remote peer; every method returns the outcomes it caused."""

    def __init__(self, rng: random.Random, *, max_segment_bytes: int = 64 << 20) -> None:
        self._rng = rng
        self._max_segment_bytes = max_segment_bytes
        self._assembler = wire.CommandAssembler()
        self._download: _Download | None = None
        self._upload: _Upload | None = None
        self._cancelled: deque[tuple[int, int]] = deque(maxlen=_REMEMBERED_CANCELS)
        self.timeouts = 0
        self.loaded: frozenset[int] = frozenset()
        """Segment ids the peer last announced as stored."""
        self.loading: frozenset[int] = frozenset()
        self.closed = False

    # --- what the scheduler asks -------------------------------------------------------

    @property
    def downloading(self) -> int | None:
        """The segment id being downloaded from this peer, if any."""
        return None if self._download is None else self._download.segment_id

    @property
    def uploading(self) -> bool:
        return self._upload is not None

    def announce(self, loaded: frozenset[int], loading: frozenset[int]) -> list[Outcome]:
        """Tell the peer what this side stores and fetches over HTTP."""
        command = wire.SegmentsAnnouncement(tuple(sorted(loaded)), tuple(sorted(loading)))
        return self._send(command)

    def request(self, segment_id: int, now: float) -> list[Outcome]:
        """Ask the peer for a segment; the caller keeps one download per peer."""
        if self._download is not None:
            raise RuntimeError(f"already downloading segment {self._download.segment_id}")
        request_id = self._rng.randrange(1000)
        self._download = _Download(segment_id, request_id, now + RECEIVE_TIMEOUT)
        return self._send(wire.SegmentRequest(segment_id, request_id))

    def cancel(self) -> list[Outcome]:
        """Give up the current download (the scheduler found the segment elsewhere)."""
        download = self._download
        if download is None:
            return []
        self._download = None
        self._cancelled.append((download.segment_id, download.request_id))
        return self._send(wire.CancelSegmentRequest(download.segment_id, download.request_id))

    def start_upload(self, request: UploadRequested, data: bytes) -> list[Outcome]:
        """Serve ``data`` (already sliced at the resume offset) to an ``UploadRequested``."""
        self._upload = _Upload(request.segment_id, request.request_id, data)
        return self._send(wire.SegmentData(request.segment_id, request.request_id, len(data)))

    def refuse(self, request: UploadRequested) -> list[Outcome]:
        """Answer ``SegmentAbsent``: not stored, or no upload slot free."""
        return self._send(wire.SegmentAbsent(request.segment_id, request.request_id))

    def next_chunk(self, budget: int) -> tuple[list[Outcome], int]:
        """Send up to ``budget`` bytes of the current upload; returns outcomes and bytes sent.

        The last chunk is followed by ``SegmentDataSendingCompleted`` and frees the upload.
        """
        upload = self._upload
        if upload is None:
            return [], 0
        size = min(MAX_CHUNK, budget, len(upload.data) - upload.sent)
        chunk = upload.data[upload.sent : upload.sent + size]
        upload.sent += size
        out: list[Outcome] = [Send(chunk)] if size else []
        if upload.sent == len(upload.data):
            self._upload = None
            done = wire.SegmentDataSendingCompleted(upload.segment_id, upload.request_id)
            out += self._send(done)
        return out, size

    def upload_remaining(self) -> int:
        """Bytes of the current upload not yet sent (0 when idle)."""
        return 0 if self._upload is None else len(self._upload.data) - self._upload.sent

    def next_deadline(self) -> float | None:
        return None if self._download is None else self._download.deadline

    def on_timer(self, now: float) -> list[Outcome]:
        """Expire a download that received nothing for ``RECEIVE_TIMEOUT`` seconds."""
        download = self._download
        if download is None or now < download.deadline:
            return []
        out = self.cancel()
        self.timeouts += 1
        out.append(DownloadFailed(download.segment_id, "timeout"))
        if self.timeouts >= MAX_TIMEOUTS:
            out += self._misbehaved(f"{self.timeouts} receive timeouts")
        return out

    # --- what the peer sends -----------------------------------------------------------

    def message_received(self, data: bytes, now: float) -> list[Outcome]:
        """Handle one data-channel message: a (part of a) command or a raw data chunk."""
        if self.closed:
            return []
        if not wire.is_command(data):
            return self._chunk_received(data, now)
        try:
            command = self._assembler.feed(data)
        except wire.WireError as error:
            return self._misbehaved(f"malformed command: {error}")
        if command is None:
            return []
        return self._command_received(command, now)

    def _command_received(self, command: wire.Command, now: float) -> list[Outcome]:
        if isinstance(command, wire.SegmentsAnnouncement):
            self.loaded, self.loading = frozenset(command.loaded), frozenset(command.loading)
            return [Announced(self.loaded, self.loading)]
        if isinstance(command, wire.SegmentRequest):
            self._upload = None  # p2pml: a new request aborts the current upload
            return [UploadRequested(command.segment_id, command.request_id, command.byte_from or 0)]
        if isinstance(command, wire.CancelSegmentRequest):
            upload = self._upload
            if upload and (upload.segment_id, upload.request_id) == (
                command.segment_id,
                command.request_id,
            ):
                self._upload = None
            return []
        ids = (command.segment_id, command.request_id)
        download = self._download
        if download is None or (download.segment_id, download.request_id) != ids:
            if ids in self._cancelled:
                return []
            return self._fail_download(f"{type(command).__name__} for unrequested {ids}")
        if isinstance(command, wire.SegmentData):
            return self._header_received(download, command, now)
        if isinstance(command, wire.SegmentAbsent):
            self._download = None
            self.loaded = self.loaded - {download.segment_id}
            return [DownloadFailed(download.segment_id, "absent")]
        return self._completed(download)

    def _header_received(
        self, download: _Download, header: wire.SegmentData, now: float
    ) -> list[Outcome]:
        if download.total is not None:
            return self._fail_download("second SegmentData header")
        if not 0 <= header.total_bytes <= self._max_segment_bytes:
            return self._fail_download(f"segment size {header.total_bytes} out of bounds")
        download.total = header.total_bytes
        download.deadline = now + RECEIVE_TIMEOUT
        return []

    def _chunk_received(self, data: bytes, now: float) -> list[Outcome]:
        download = self._download
        if download is None or download.total is None:
            return []  # the tail of an upload this side cancelled
        download.received += len(data)
        if download.received > download.total:
            return self._fail_download(f"more than the announced {download.total} bytes")
        download.chunks.append(data)
        download.deadline = now + RECEIVE_TIMEOUT
        return []

    def _completed(self, download: _Download) -> list[Outcome]:
        if download.total is None or download.received != download.total:
            return self._fail_download(
                f"completed after {download.received} of {download.total} bytes"
            )
        self._download = None
        self.timeouts = 0
        return [Downloaded(download.segment_id, b"".join(download.chunks))]

    def _fail_download(self, reason: str) -> list[Outcome]:
        """Wrong ids or byte counts: cancel, report the segment lost, condemn the peer."""
        download = self._download
        out = self.cancel()
        if download is not None:
            out.append(DownloadFailed(download.segment_id, "protocol"))
        return out + self._misbehaved(reason)

    def _misbehaved(self, reason: str) -> list[Outcome]:
        self.closed = True
        self._download = self._upload = None
        return [Misbehaved(reason)]

    def _send(self, command: wire.Command) -> list[Outcome]:
        return [Send(message) for message in wire.encode(command)]
