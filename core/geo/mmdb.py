"""A MaxMind DB (format 2.0) writer: networks and records in, the bytes of a `.mmdb` out.

Readers (`maxminddb`, libmaxminddb, geoip2) look an address up by walking a binary search
tree one bit at a time; a record either points to the next node, says "no data", or points
into the data section where the records are encoded in MaxMind's typed format. See
https://maxmind.github.io/MaxMind-DB/ for the specification this follows.

Choices, so that one file serves both address families:

- the tree is always IPv6 (`ip_version` 6); IPv4 networks live in `::/96` (`a.b.c.d/n` is
  stored as `::a.b.c.d/(96+n)`), where readers look IPv4 addresses up. Unlike MaxMind's own
  databases there are no aliases (`::ffff:0:0/96`, `2002::/16`): look up an IPv4-mapped
  address by its IPv4 form;
- a more specific network wins over a broader one that contains it, whatever the input order;
  two equal networks: the last one wins;
- identical records are stored once; the record size (24, 28 or 32 bits) is the smallest that
  fits.

Record values: `str`, `bool`, `int` (negative ones must fit a signed 32-bit int; others are
stored as uint32, uint64 or uint128 by size), `float` (as a double), `bytes`, `dict` with
string keys, and `list`. The build time is a parameter: core never reads a clock.
"""

import ipaddress
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Value = str | bool | int | float | bytes | Mapping[str, "Value"] | Sequence["Value"]

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
_DATA_SEPARATOR = bytes(16)
_IPV4_IN_IPV6_BITS = 96

# Data section type numbers (specification, "Output Data Section").
_POINTER, _STRING, _DOUBLE, _BYTES, _UINT16, _UINT32, _MAP = 1, 2, 3, 4, 5, 6, 7
_INT32, _UINT64, _UINT128, _ARRAY, _BOOLEAN = 8, 9, 10, 11, 14


@dataclass(frozen=True)
class Metadata:
    database_type: str
    description: Mapping[str, str] = field(default_factory=dict)
    """Language code -> description."""
    languages: Sequence[str] = ()
    build_epoch: int = 0
    """Seconds since the epoch when the database was built (the caller's clock)."""


def _control(type_number: int, size: int) -> bytes:
    """The control byte(s): type and payload size, with the extended forms of both."""
    if size < 29:
        size_bits, extra = size, b""
    elif size < 29 + 256:
        size_bits, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        size_bits, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        size_bits, extra = 31, (size - 65821).to_bytes(3, "big")
    if type_number <= 7:
        return bytes([type_number << 5 | size_bits]) + extra
    return bytes([size_bits, type_number - 7]) + extra


def _unsigned(type_number: int, value: int) -> bytes:
    payload = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return _control(type_number, len(payload)) + payload


def encode(value: Value) -> bytes:
    """One value in the data section's encoding."""
    if isinstance(value, bool):  # before int: bool is an int
        return _control(_BOOLEAN, int(value))
    if isinstance(value, int):
        if value < 0:
            if value < -(2**31):
                raise ValueError(f"negative integers must fit 32 bits, got {value}")
            return _control(_INT32, 4) + value.to_bytes(4, "big", signed=True)
        for type_number, bits in ((_UINT32, 32), (_UINT64, 64), (_UINT128, 128)):
            if value.bit_length() <= bits:
                return _unsigned(type_number, value)
        raise ValueError(f"integers must fit 128 bits, got {value}")
    if isinstance(value, float):
        return _control(_DOUBLE, 8) + struct.pack(">d", value)
    if isinstance(value, str):
        text = value.encode()
        return _control(_STRING, len(text)) + text
    if isinstance(value, bytes):
        return _control(_BYTES, len(value)) + value
    if isinstance(value, Mapping):
        parts = [_control(_MAP, len(value))]
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"map keys must be strings, got {key!r}")
            parts += (encode(key), encode(item))
        return b"".join(parts)
    if isinstance(value, Sequence):
        return _control(_ARRAY, len(value)) + b"".join(encode(item) for item in value)
    raise TypeError(f"cannot store {type(value).__name__} in a MaxMind DB")


class _Node:
    """A search tree node: each side is a node, a record's data offset, or None (no data)."""

    __slots__ = ("sides",)

    def __init__(self, left: "_Node | int | None" = None, right: "_Node | int | None" = None):
        self.sides: list[_Node | int | None] = [left, right]


def _bits(network: Network) -> tuple[int, int]:
    """The network as (address bits in the IPv6 tree, prefix length in it)."""
    if isinstance(network, ipaddress.IPv4Network):
        return int(network.network_address), _IPV4_IN_IPV6_BITS + network.prefixlen
    return int(network.network_address), network.prefixlen


def _insert(root: _Node, network: Network, offset: int) -> None:
    address, prefix = _bits(network)
    if prefix == 0:
        root.sides = [offset, offset]
        return
    node = root
    for depth in range(prefix - 1):
        bit = address >> (127 - depth) & 1
        child = node.sides[bit]
        if not isinstance(child, _Node):
            # A broader network's record (or nothing) covered this half: split it in two.
            child = _Node(child, child)
            node.sides[bit] = child
        node = child
    node.sides[address >> (127 - (prefix - 1)) & 1] = offset


def _number(root: _Node) -> list[_Node]:
    """Nodes in depth-first preorder: the root is node 0, as readers expect."""
    ordered, stack = [], [root]
    while stack:
        node = stack.pop()
        ordered.append(node)
        stack.extend(side for side in reversed(node.sides) if isinstance(side, _Node))
    return ordered


def _pack_node(left: int, right: int, record_size: int) -> bytes:
    if record_size == 24:
        return left.to_bytes(3, "big") + right.to_bytes(3, "big")
    if record_size == 28:
        middle = (left >> 24) << 4 | (right >> 24)
        low = 0xFFFFFF
        return (left & low).to_bytes(3, "big") + bytes([middle]) + (right & low).to_bytes(3, "big")
    return left.to_bytes(4, "big") + right.to_bytes(4, "big")


def build(entries: Iterable[tuple[Network, Mapping[str, Value]]], metadata: Metadata) -> bytes:
    """The bytes of a MaxMind DB mapping each network to its record."""
    data = bytearray()
    offsets: dict[bytes, int] = {}
    root = _Node()
    # Broader networks first, so that a more specific one splits them and wins.
    for network, fields in sorted(entries, key=lambda entry: _bits(entry[0])[1]):
        encoded = encode(fields)
        offset = offsets.get(encoded)
        if offset is None:
            offset = offsets[encoded] = len(data)
            data += encoded
        _insert(root, network, offset)
    nodes = _number(root)
    numbers = {id(node): index for index, node in enumerate(nodes)}
    count = len(nodes)

    def record(side: _Node | int | None) -> int:
        if isinstance(side, _Node):
            return numbers[id(side)]
        return count if side is None else count + len(_DATA_SEPARATOR) + side

    largest = count + len(_DATA_SEPARATOR) + len(data)
    record_size = next(size for size in (24, 28, 32) if largest < 1 << size)
    tree = b"".join(
        _pack_node(record(node.sides[0]), record(node.sides[1]), record_size) for node in nodes
    )
    meta = b"".join(
        [
            _control(_MAP, 9),
            encode("node_count"),
            _unsigned(_UINT32, count),
            encode("record_size"),
            _unsigned(_UINT16, record_size),
            encode("ip_version"),
            _unsigned(_UINT16, 6),
            encode("database_type"),
            encode(metadata.database_type),
            encode("languages"),
            encode(list(metadata.languages)),
            encode("binary_format_major_version"),
            _unsigned(_UINT16, 2),
            encode("binary_format_minor_version"),
            _unsigned(_UINT16, 0),
            encode("build_epoch"),
            _unsigned(_UINT64, metadata.build_epoch),
            encode("description"),
            encode(dict(metadata.description)),
        ]
    )
    return tree + _DATA_SEPARATOR + bytes(data) + METADATA_MARKER + meta


__all__ = ["METADATA_MARKER", "Metadata", "Network", "Value", "build", "encode"]
