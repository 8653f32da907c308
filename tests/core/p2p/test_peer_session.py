"""The per-peer protocol state machine: downloads, uploads, timeouts and hostile peers."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from core.p2p import wire
from core.p2p.peer_session import (
    MAX_CHUNK,
    RECEIVE_TIMEOUT,
    Announced,
    Downloaded,
    DownloadFailed,
    Misbehaved,
    Outcome,
    PeerSession,
    Send,
    UploadRequested,
)


def sent(outcomes: list[Outcome]) -> list[wire.Command | bytes]:
    """What went on the wire: decoded commands, raw chunks as bytes."""
    out: list[wire.Command | bytes] = []
    for outcome in outcomes:
        if isinstance(outcome, Send):
            is_cmd = wire.is_command(outcome.data)
            out.append(wire.decode(outcome.data[4:-4]) if is_cmd else outcome.data)
    return out


def feed(session: PeerSession, command: wire.Command, now: float = 0.0) -> list[Outcome]:
    out: list[Outcome] = []
    for message in wire.encode(command):
        out += session.message_received(message, now)
    return out


def requested(session: PeerSession, segment_id: int = 8, now: float = 0.0) -> int:
    (request,) = sent(session.request(segment_id, now))
    assert isinstance(request, wire.SegmentRequest) and request.segment_id == segment_id
    assert 0 <= request.request_id < 1000
    return request.request_id


def test_download_in_chunks() -> None:
    session = PeerSession(random.Random(1))
    r = requested(session)
    assert session.downloading == 8
    assert feed(session, wire.SegmentData(8, r, 10)) == []
    assert session.message_received(b"01234", 0.5) == []
    assert session.message_received(b"56789", 0.6) == []
    assert feed(session, wire.SegmentDataSendingCompleted(8, r)) == [Downloaded(8, b"0123456789")]
    assert session.downloading is None


def test_announcement_is_recorded() -> None:
    session = PeerSession(random.Random(1))
    out = feed(session, wire.SegmentsAnnouncement((1, 2), (3,)))
    assert out == [Announced(frozenset({1, 2}), frozenset({3}))]
    assert session.loaded == {1, 2} and session.loading == {3}


def test_absent_forgets_the_segment() -> None:
    session = PeerSession(random.Random(1))
    feed(session, wire.SegmentsAnnouncement((8,)))
    r = requested(session)
    assert feed(session, wire.SegmentAbsent(8, r)) == [DownloadFailed(8, "absent")]
    assert 8 not in session.loaded and session.downloading is None


def _condemned(out: list[Outcome], r: int) -> None:
    assert wire.CancelSegmentRequest(8, r) in sent(out)
    assert DownloadFailed(8, "protocol") in out
    assert isinstance(out[-1], Misbehaved)


def test_too_many_bytes_condemn_the_peer() -> None:
    session = PeerSession(random.Random(1))
    r = requested(session)
    feed(session, wire.SegmentData(8, r, 4))
    _condemned(session.message_received(b"12345", 0.1), r)
    assert session.closed and session.message_received(b"x", 0.2) == []


def test_short_transfer_condemns_the_peer() -> None:
    session = PeerSession(random.Random(1))
    r = requested(session)
    feed(session, wire.SegmentData(8, r, 4))
    session.message_received(b"123", 0.1)
    _condemned(feed(session, wire.SegmentDataSendingCompleted(8, r)), r)


def test_mismatched_ids_condemn_the_peer() -> None:
    session = PeerSession(random.Random(1))
    r = requested(session)
    _condemned(feed(session, wire.SegmentData(8, r + 1, 4)), r)


def test_oversized_segment_condemns_the_peer() -> None:
    session = PeerSession(random.Random(1), max_segment_bytes=100)
    r = requested(session)
    _condemned(feed(session, wire.SegmentData(8, r, 101)), r)


def test_malformed_command_condemns_the_peer() -> None:
    session = PeerSession(random.Random(1))
    out = session.message_received(b"cstr\x09cend", 0.0)
    assert len(out) == 1 and isinstance(out[0], Misbehaved)


def test_replies_to_a_cancelled_request_are_ignored() -> None:
    session = PeerSession(random.Random(1))
    r = requested(session)
    assert sent(session.cancel()) == [wire.CancelSegmentRequest(8, r)]
    assert feed(session, wire.SegmentData(8, r, 3)) == []
    assert session.message_received(b"abc", 0.1) == []
    assert feed(session, wire.SegmentDataSendingCompleted(8, r)) == []
    assert not session.closed


def test_timeouts_cancel_and_three_condemn() -> None:
    session = PeerSession(random.Random(1))
    now = 0.0
    for attempt in range(1, 4):
        r = requested(session, now=now)
        feed(session, wire.SegmentData(8, r, 10), now)
        session.message_received(b"12", now + 1.5)  # bytes push the deadline back
        assert session.on_timer(now + 1.5 + RECEIVE_TIMEOUT - 0.01) == []
        out = session.on_timer(now + 1.5 + RECEIVE_TIMEOUT)
        assert sent(out)[0] == wire.CancelSegmentRequest(8, r)
        assert DownloadFailed(8, "timeout") in out
        assert isinstance(out[-1], Misbehaved) == (attempt == 3)
        now += 10


def test_a_completed_download_resets_the_timeout_count() -> None:
    session = PeerSession(random.Random(1))
    for _ in range(2):
        requested(session)
        session.on_timer(RECEIVE_TIMEOUT)
    r = requested(session)
    feed(session, wire.SegmentData(8, r, 0))
    feed(session, wire.SegmentDataSendingCompleted(8, r))
    assert session.timeouts == 0


def test_upload_in_bounded_chunks_then_completed() -> None:
    session = PeerSession(random.Random(1))
    (request,) = feed(session, wire.SegmentRequest(3, 77))
    assert request == UploadRequested(3, 77, 0)
    assert isinstance(request, UploadRequested)
    data = bytes(range(256)) * 600  # 153600 bytes: 65535 + 65535 + 22530
    assert sent(session.start_upload(request, data)) == [wire.SegmentData(3, 77, len(data))]
    sizes = []
    while session.uploading:
        out, size = session.next_chunk(10**9)
        sizes.append(size)
    assert sizes == [MAX_CHUNK, MAX_CHUNK, len(data) - 2 * MAX_CHUNK]
    assert sent(out)[-1] == wire.SegmentDataSendingCompleted(3, 77)


def test_resume_offset_and_refusal() -> None:
    session = PeerSession(random.Random(1))
    (request,) = feed(session, wire.SegmentRequest(3, 77, byte_from=5))
    assert request == UploadRequested(3, 77, 5)
    assert isinstance(request, UploadRequested)
    assert sent(session.refuse(request)) == [wire.SegmentAbsent(3, 77)]


def test_new_request_or_cancel_aborts_the_upload() -> None:
    session = PeerSession(random.Random(1))
    (first,) = feed(session, wire.SegmentRequest(3, 1))
    assert isinstance(first, UploadRequested)
    session.start_upload(first, b"x" * 100)
    feed(session, wire.SegmentRequest(4, 2))
    assert not session.uploading
    (second,) = feed(session, wire.SegmentRequest(4, 3))
    assert isinstance(second, UploadRequested)
    session.start_upload(second, b"x" * 100)
    feed(session, wire.CancelSegmentRequest(4, 99))  # not this upload
    assert session.uploading
    feed(session, wire.CancelSegmentRequest(4, 3))
    assert not session.uploading


@given(st.lists(st.binary(max_size=40) | st.sampled_from([b"cstr\x00cend", b"dstrxxdend"])))
def test_hostile_messages_never_raise(messages: list[bytes]) -> None:
    """Any bytes from a peer yield outcomes, never an exception; a condemned peer goes quiet."""
    session = PeerSession(random.Random(1))
    requested(session)
    for n, message in enumerate(messages):
        for data in (b"cstr" + message + b"cend", message):
            outcomes = session.message_received(data, n)
            if any(isinstance(o, Misbehaved) for o in outcomes):
                assert session.closed and session.downloading is None
