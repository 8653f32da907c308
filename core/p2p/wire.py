"""Binary command codec of the p2p-media-loader 2.3.x peer wire protocol.

Peers on a WebRTC data channel exchange commands framed ``cstr``+body+``cend``
(or split ``cstr..dend``, ``dstr..dend``, ``dstr..cend``); everything else is raw
segment data. Bodies are ``[code]`` then ``[name-char][typed value]`` pairs, where
a value is an Int, SimilarIntArray or String (research notes section 1b).
Peers are untrusted, so decoding bounds every length and raises ``WireError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CSTR = b"cstr"
CEND = b"cend"
DSTR = b"dstr"
DEND = b"dend"
FRAME_OVERHEAD = 8
MAX_INT_BYTES = 8
MAX_COMMAND_SIZE = 1 << 20  # an assembled command body larger than this is hostile

_INT, _ARRAY, _STRING = 0, 1, 2


class WireError(ValueError):
    """A peer sent a malformed, oversized or unknown command."""


@dataclass(frozen=True)
class SegmentsAnnouncement:
    """Code 0: ids stored (``l``) and ids being fetched over HTTP (``p``)."""

    loaded: tuple[int, ...] = ()
    loading: tuple[int, ...] = ()


@dataclass(frozen=True)
class SegmentRequest:
    """Code 1: ask for a segment, optionally resuming at ``byte_from`` (``b``)."""

    segment_id: int
    request_id: int
    byte_from: int | None = None


@dataclass(frozen=True)
class SegmentData:
    """Code 2: header announcing ``total_bytes`` of raw chunks to follow."""

    segment_id: int
    request_id: int
    total_bytes: int


@dataclass(frozen=True)
class SegmentDataSendingCompleted:
    """Code 3: all chunks of the segment were sent."""

    segment_id: int
    request_id: int


@dataclass(frozen=True)
class SegmentAbsent:
    """Code 4: the peer does not have the requested segment."""

    segment_id: int
    request_id: int


@dataclass(frozen=True)
class CancelSegmentRequest:
    """Code 5: the requester gives up on the segment."""

    segment_id: int
    request_id: int


Command = (
    SegmentsAnnouncement
    | SegmentRequest
    | SegmentData
    | SegmentDataSendingCompleted
    | SegmentAbsent
    | CancelSegmentRequest
)

_SIMPLE: dict[int, type[SegmentDataSendingCompleted | SegmentAbsent | CancelSegmentRequest]] = {
    3: SegmentDataSendingCompleted,
    4: SegmentAbsent,
    5: CancelSegmentRequest,
}


# --- values -----------------------------------------------------------------


def _encode_int(value: int) -> bytes:
    """Int: ``0x0L`` then L big-endian bytes of |value|, sign in the top bit."""
    magnitude = abs(value)
    length = max(1, (magnitude.bit_length() + 1 + 7) // 8)
    if length > MAX_INT_BYTES:
        raise ValueError(f"integer {value} does not fit {MAX_INT_BYTES} bytes")
    raw = bytearray(magnitude.to_bytes(length, "big"))
    if value < 0:
        raw[0] |= 0x80
    return bytes([(_INT << 4) | length]) + bytes(raw)


def _encode_array(values: Iterable[int]) -> bytes:
    """SimilarIntArray: ids grouped by high bits; each group holds ≤ 255 low bytes."""
    groups: dict[int, list[list[int]]] = {}
    for value in values:
        if value < 0:
            raise ValueError(f"segment ids must be non-negative, got {value}")
        chunks = groups.setdefault(value & ~0xFF, [[]])
        if len(chunks[-1]) == 255:
            chunks.append([])
        chunks[-1].append(value & 0xFF)
    flat = [(high, low) for high, chunks in groups.items() for low in chunks if low]
    if len(flat) > 255:
        raise ValueError(f"{len(flat)} id groups do not fit the one-byte group count")
    out = bytearray([_ARRAY << 4, len(flat)])
    for high, low in flat:
        out += _encode_int(high | len(low))
        out += bytes(low)
    return bytes(out)


class _Reader:
    """Bounded cursor over a body; every read checks the remaining length."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise WireError(f"truncated command: need {n} bytes at offset {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def int_value(self) -> int:
        head = self.byte()
        if head >> 4 != _INT:
            raise WireError(f"expected Int, got type {head >> 4}")
        length = head & 0x0F
        if not 1 <= length <= MAX_INT_BYTES:
            raise WireError(f"Int length {length} out of range 1..{MAX_INT_BYTES}")
        raw = bytearray(self.take(length))
        negative = bool(raw[0] & 0x80)
        raw[0] &= 0x7F
        magnitude = int.from_bytes(raw, "big")
        return -magnitude if negative else magnitude

    def array_value(self) -> tuple[int, ...]:
        head = self.byte()
        if head >> 4 != _ARRAY:
            raise WireError(f"expected SimilarIntArray, got type {head >> 4}")
        out: list[int] = []
        for _ in range(self.byte()):
            group = self.int_value()
            if group < 0:
                raise WireError("negative SimilarIntArray group")
            count, high = group & 0xFF, group & ~0xFF
            out.extend(high | low for low in self.take(count))
        return tuple(out)


# --- commands ---------------------------------------------------------------


def _body(command: Command) -> bytes:
    """Serialise a command body in the field order p2pml itself uses."""
    if isinstance(command, SegmentsAnnouncement):
        out = bytearray([0])
        if command.loaded:
            out += b"l" + _encode_array(command.loaded)
        if command.loading:
            out += b"p" + _encode_array(command.loading)
        return bytes(out)
    if isinstance(command, SegmentRequest):
        out = bytearray([1])
        out += b"i" + _encode_int(command.segment_id) + b"r" + _encode_int(command.request_id)
        if command.byte_from is not None:
            out += b"b" + _encode_int(command.byte_from)
        return bytes(out)
    if isinstance(command, SegmentData):
        return (
            bytes([2])
            + b"i"
            + _encode_int(command.segment_id)
            + b"s"
            + _encode_int(command.total_bytes)
            + b"r"
            + _encode_int(command.request_id)
        )
    code = {SegmentDataSendingCompleted: 3, SegmentAbsent: 4, CancelSegmentRequest: 5}[
        type(command)
    ]
    return (
        bytes([code])
        + b"i"
        + _encode_int(command.segment_id)
        + b"r"
        + _encode_int(command.request_id)
    )


def encode(command: Command, max_message_size: int = 65535) -> list[bytes]:
    """Encode a command into one or more data-channel messages of ≤ max_message_size."""
    if max_message_size <= FRAME_OVERHEAD:
        raise ValueError("max_message_size must exceed the 8-byte framing")
    body = _body(command)
    if len(body) + FRAME_OVERHEAD <= max_message_size:
        return [CSTR + body + CEND]
    parts = -(-len(body) // (max_message_size - FRAME_OVERHEAD))
    size = -(-len(body) // parts)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    last = len(chunks) - 1
    return [
        (CSTR if n == 0 else DSTR) + chunk + (CEND if n == last else DEND)
        for n, chunk in enumerate(chunks)
    ]


def is_command(message: bytes) -> bool:
    """True if the message is (part of) a command rather than raw segment data."""
    return (
        len(message) >= FRAME_OVERHEAD
        and message[:4] in (CSTR, DSTR)
        and message[-4:] in (CEND, DEND)
    )


def decode(body: bytes) -> Command:
    """Decode an unframed command body; raise WireError on anything malformed."""
    if len(body) > MAX_COMMAND_SIZE:
        raise WireError(f"command body of {len(body)} bytes exceeds {MAX_COMMAND_SIZE}")
    reader = _Reader(body)
    code = reader.byte()
    ints: dict[str, int] = {}
    arrays: dict[str, tuple[int, ...]] = {}
    array_names = "lp" if code == 0 else ""
    int_names = {0: "", 1: "irb", 2: "irs"}.get(code, "ir")
    if code > 5:
        raise WireError(f"unknown command code {code}")
    while reader.pos < len(body):
        name = chr(reader.byte())
        if name in ints or name in arrays:
            raise WireError(f"duplicate field {name!r} in command {code}")
        if name in array_names:
            arrays[name] = reader.array_value()
        elif name in int_names:
            ints[name] = reader.int_value()
        else:
            raise WireError(f"unexpected field {name!r} in command {code}")
    if code == 0:
        return SegmentsAnnouncement(arrays.get("l", ()), arrays.get("p", ()))
    missing = [n for n in int_names if n != "b" and n not in ints]
    if missing:
        raise WireError(f"command {code} lacks field(s) {', '.join(missing)}")
    if code == 1:
        return SegmentRequest(ints["i"], ints["r"], ints.get("b"))
    if code == 2:
        return SegmentData(ints["i"], ints["r"], ints["s"])
    return _SIMPLE[code](ints["i"], ints["r"])


class CommandAssembler:
    """Joins framed messages (single or split) into commands, bounding the total size."""

    def __init__(self, max_command_size: int = MAX_COMMAND_SIZE) -> None:
        self.max_command_size = max_command_size
        self._parts: list[bytes] | None = None
        self._size = 0

    def feed(self, message: bytes) -> Command | None:
        """Take one command message; return a command once complete, else None."""
        if not is_command(message):
            raise WireError("message is not a framed command")
        head, payload, tail = message[:4], message[4:-4], message[-4:]
        if head == CSTR:
            if self._parts is not None:
                self._reset()
                raise WireError("new command started before the previous one ended")
            if tail == CEND:
                return decode(payload)
            self._parts, self._size = [], 0
        elif self._parts is None:
            raise WireError("continuation (dstr) without a command start")
        self._size += len(payload)
        if self._size > self.max_command_size:
            self._reset()
            raise WireError(f"split command exceeds {self.max_command_size} bytes")
        assert self._parts is not None
        self._parts.append(payload)
        if tail == DEND:
            return None
        body = b"".join(self._parts)
        self._reset()
        return decode(body)

    def _reset(self) -> None:
        self._parts, self._size = None, 0
