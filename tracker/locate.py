"""Who and where a WebSocket client is: its address, and its `Location` for peer matching.

The address is the socket's peer, or the last `X-Forwarded-For` hop not itself a trusted proxy
when the socket's peer is one of `trusted_proxies` (anyone else could write that header).

The location comes from the MaxMind DB at `geoip_db` when configured. Fields read from a
record: `pop` (a string, Shoal's own PoP maps built with `core.geo.mmdb`),
`autonomous_system_number` (GeoLite2-ASN style), `country.iso_code`, and the region as the
first of `region` (a string), `subdivisions[0].iso_code`, `continent.code`. The `?pop=` query
parameter of the WebSocket URL (set by the edge that served the player) fills the PoP only
when the DB names none, and only with `pop_from_query`: a client can lie about it, but the lie
only changes whom its own offers reach first.
"""

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

import maxminddb

from core.p2p.locality import UNKNOWN, Location

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Sequence[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]) -> str:
    """The client's address as text (IPv4-mapped IPv6 in its IPv4 form)."""
    address = _address(peer or "")
    if address is None:
        return peer or ""

    def is_trusted(hop: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(hop in network for network in trusted)

    if forwarded_for and is_trusted(address):
        # Walk back from the nearest hop: the first one we do not trust is the client.
        for hop_text in reversed(forwarded_for.split(",")):
            hop = _address(hop_text)
            if hop is None:
                break
            address = hop
            if not is_trusted(hop):
                break
    return str(address)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def location_of(record: Mapping[str, Any] | None, query_pop: str | None) -> Location:
    """A `Location` from a MaxMind DB record (see the module docstring for the fields)."""
    record = record or {}
    country = record.get("country")
    subdivisions = record.get("subdivisions")
    continent = record.get("continent")
    asn = record.get("autonomous_system_number")
    region = _text(record.get("region"))
    if region is None and isinstance(subdivisions, list) and subdivisions:
        first = subdivisions[0]
        region = _text(first.get("iso_code")) if isinstance(first, dict) else None
    if region is None and isinstance(continent, dict):
        region = _text(continent.get("code"))
    return Location(
        pop=_text(record.get("pop")) or query_pop,
        asn=asn if isinstance(asn, int) and not isinstance(asn, bool) else None,
        country=_text(country.get("iso_code")) if isinstance(country, dict) else None,
        region=region,
    )


class Locator:
    """Addresses to `Location`s through an optional MaxMind DB (opened once, memory-mapped)."""

    def __init__(self, geoip_db: str, *, pop_from_query: bool) -> None:
        self._reader = maxminddb.open_database(geoip_db) if geoip_db else None
        self._pop_from_query = pop_from_query

    def locate(self, ip: str, query_pop: str | None) -> Location:
        pop = _text(query_pop) if self._pop_from_query else None
        record = None
        if self._reader is not None and _address(ip) is not None:
            found = self._reader.get(ip)
            record = found if isinstance(found, dict) else None
        if record is None and pop is None:
            return UNKNOWN
        return location_of(record, pop)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
