"""The MMDB writer's files read back with MaxMind's own reader, record for record."""

import io
import ipaddress
import math

import maxminddb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.geo.mmdb import METADATA_MARKER, Metadata, Network, Value, build, encode

META = Metadata("Shoal-PoP", {"en": "test PoP map"}, ["en"], build_epoch=1_700_000_000)


def _reader(entries: list[tuple[Network, dict[str, Value]]]) -> maxminddb.Reader:
    return maxminddb.open_database(io.BytesIO(build(entries, META)), mode=maxminddb.MODE_FD)


def test_metadata_and_nested_records_round_trip() -> None:
    record: dict[str, Value] = {
        "pop": "par1",
        "autonomous_system_number": 3215,
        "country": {"iso_code": "FR", "names": {"en": "France"}},
        "subdivisions": [{"iso_code": "IDF"}],
        "weight": 0.25,
        "negative": -12,
        "big": 2**70,
        "u64": 2**40,
        "flag": True,
        "off": False,
        "blob": b"\x00\xff",
        "long": "x" * 70_000,
        "empty": {},
        "none_list": [],
    }
    reader = _reader([(ipaddress.ip_network("192.0.2.0/24"), record)])
    assert reader.get("192.0.2.77") == record
    meta = reader.metadata()
    assert (meta.database_type, meta.ip_version, meta.languages) == ("Shoal-PoP", 6, ["en"])
    assert meta.description == {"en": "test PoP map"}
    assert meta.build_epoch == 1_700_000_000
    assert (meta.binary_format_major_version, meta.binary_format_minor_version) == (2, 0)


def test_networks_ipv4_and_ipv6_with_prefix_lengths() -> None:
    reader = _reader(
        [
            (ipaddress.ip_network("10.0.0.0/8"), {"pop": "a"}),
            (ipaddress.ip_network("2001:db8::/32"), {"pop": "b"}),
        ]
    )
    record, prefix = reader.get_with_prefix_len("10.1.2.3")
    assert (record, prefix) == ({"pop": "a"}, 8)
    assert reader.get_with_prefix_len("2001:db8::1") == ({"pop": "b"}, 32)
    assert reader.get("11.0.0.1") is None
    assert reader.get("2001:db9::1") is None


def test_more_specific_network_wins_in_any_order() -> None:
    wide, narrow = ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("10.1.0.0/16")
    for entries in ([(wide, {"n": 1}), (narrow, {"n": 2})], [(narrow, {"n": 2}), (wide, {"n": 1})]):
        reader = _reader(entries)  # type: ignore[arg-type]
        assert reader.get("10.1.200.1") == {"n": 2}
        assert reader.get("10.2.0.1") == {"n": 1}


def test_whole_address_space_and_empty_database() -> None:
    assert _reader([(ipaddress.ip_network("::/0"), {"any": 1})]).get("2001:db8::1") == {"any": 1}
    assert _reader([]).get("1.2.3.4") is None


def test_identical_records_are_stored_once() -> None:
    one = build([(ipaddress.ip_network("10.0.0.0/8"), {"pop": "par1" * 50})], META)
    two = build(
        [
            (ipaddress.ip_network("10.0.0.0/8"), {"pop": "par1" * 50}),
            (ipaddress.ip_network("12.0.0.0/8"), {"pop": "par1" * 50}),
        ],
        META,
    )
    assert two.count(("par1" * 50).encode()) == one.count(("par1" * 50).encode()) == 1
    assert METADATA_MARKER in two


@pytest.mark.parametrize("bad", [-(2**31) - 1, 2**128, object(), {1: "x"}])
def test_unstorable_values_are_refused(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode(bad)  # type: ignore[arg-type]


def test_many_networks_read_back() -> None:
    entries: list[tuple[Network, dict[str, Value]]] = [
        (ipaddress.ip_network(f"10.{i // 256}.{i % 256}.0/24"), {"i": i}) for i in range(0, 4096, 7)
    ]
    reader = _reader(entries)
    assert reader.metadata().record_size == 24
    for network, record in entries:
        assert reader.get(str(network.network_address + 1)) == record


def test_a_data_section_past_16_mib_uses_28_bit_records() -> None:
    huge = "x" * (1 << 24)
    reader = _reader(
        [
            (ipaddress.ip_network("10.0.0.0/8"), {"a": 1}),
            (ipaddress.ip_network("11.0.0.0/8"), {"huge": huge}),
            (ipaddress.ip_network("12.0.0.0/8"), {"b": 2}),
        ]
    )
    assert reader.metadata().record_size == 28
    assert reader.get("12.1.1.1") == {"b": 2}
    assert reader.get("10.1.1.1") == {"a": 1}


_scalars = (
    st.text(max_size=40)
    | st.booleans()
    | st.integers(min_value=-(2**31), max_value=2**128 - 1)
    | st.floats(allow_nan=False)
    | st.binary(max_size=40)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2**32 - 1),
            st.integers(min_value=1, max_value=32),
            st.dictionaries(st.text(max_size=8), _values, max_size=4),
        ),
        max_size=12,
    ),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_lookups_match_the_most_specific_containing_network(
    specs: list[tuple[int, int, dict[str, Value]]], probe: int
) -> None:
    entries: list[tuple[Network, dict[str, Value]]] = [
        (ipaddress.IPv4Network((address, prefix), strict=False), record)
        for address, prefix, record in specs
    ]
    reader = _reader(entries)
    for address in [probe, *(int(network.network_address) for network, _ in entries)]:
        ip = ipaddress.IPv4Address(address)
        containing = [(n, r) for n, r in entries if ip in n]
        found = reader.get(str(ip))
        if not containing:
            assert found is None
            continue
        # The longest prefix wins; among equal networks the last given.
        best = max(n.prefixlen for n, _ in containing)
        expected = [r for n, r in containing if n.prefixlen == best][-1]
        assert _same(found, expected)


def _same(found: object, expected: object) -> bool:
    if isinstance(expected, float) and isinstance(found, float):
        return found == expected or (math.isinf(found) and found == expected)
    if isinstance(expected, dict) and isinstance(found, dict):
        return found.keys() == expected.keys() and all(_same(found[k], expected[k]) for k in found)
    if isinstance(expected, list) and isinstance(found, list):
        return len(found) == len(expected) and all(map(_same, found, expected))
    return found == expected and type(found) is type(expected)
