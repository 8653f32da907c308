"""The origin's per-rendition integrity list, and the check every peer-served segment must pass.

p2p-media-loader trusts whatever bytes a peer sends (p2pml #29); Shoal does not. The origin
publishes ``/v/<video>/<rung>/integrity.json`` beside each media playlist::

    {"version": 1, "algorithm": "sha256", "segments": {"<uri>": "<hex sha256>", ...}}

keyed by the init and segment URIs exactly as the media playlist writes them. The list comes
through edges and could be truncated or tampered with on the way, so parsing is strict: any
deviation raises ``IntegrityError`` and the peer falls back to HTTP only (it can verify nothing,
so it shares nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

MAX_LIST_BYTES = 4 << 20
"""A list larger than this is hostile: even a 24-hour rendition in 1 s segments is ~8 MB less."""
MAX_ENTRIES = 100_000
MAX_URI_LENGTH = 1024
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEYS = frozenset({"version", "algorithm", "segments"})


class IntegrityError(ValueError):
    """The integrity list is malformed, unsupported or oversized."""


@dataclass(frozen=True)
class IntegrityList:
    """SHA-256 digests by segment URI; only segments listed here can be verified (and shared)."""

    digests: Mapping[str, bytes]

    def covers(self, uri: str) -> bool:
        """True if ``uri`` has a digest, that is, bytes for it can be verified."""
        return uri in self.digests

    def verify(self, uri: str, data: bytes) -> bool:
        """True only if ``uri`` is listed and ``data`` hashes to its digest."""
        expected = self.digests.get(uri)
        if expected is None:
            return False
        return hmac.compare_digest(hashlib.sha256(data).digest(), expected)


EMPTY = IntegrityList(MappingProxyType({}))
"""The list of a peer that has none: nothing verifies, so everything comes over HTTP."""


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: a repeated key could hide a second digest for one URI."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise IntegrityError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _check_uri(uri: str) -> None:
    if not uri or len(uri) > MAX_URI_LENGTH:
        raise IntegrityError(f"segment URI of length {len(uri)} outside 1..{MAX_URI_LENGTH}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
        raise IntegrityError(f"segment URI {uri!r} contains control characters")


def parse_integrity(raw: bytes) -> IntegrityList:
    """Parse and validate an integrity list; raise ``IntegrityError`` on anything unexpected."""
    if len(raw) > MAX_LIST_BYTES:
        raise IntegrityError(f"integrity list of {len(raw)} bytes exceeds {MAX_LIST_BYTES}")
    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise IntegrityError(f"integrity list is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise IntegrityError("integrity list must be a JSON object")
    if set(document) != _KEYS:
        raise IntegrityError(f"integrity list keys must be {sorted(_KEYS)}, got {sorted(document)}")
    version = document["version"]
    if type(version) is not int or version != 1:
        raise IntegrityError(f"unsupported integrity list version {version!r}")
    if document["algorithm"] != "sha256":
        raise IntegrityError(f"unsupported algorithm {document['algorithm']!r}")
    segments = document["segments"]
    if not isinstance(segments, dict):
        raise IntegrityError("'segments' must be an object of URI -> hex digest")
    if len(segments) > MAX_ENTRIES:
        raise IntegrityError(f"{len(segments)} entries exceed {MAX_ENTRIES}")
    digests: dict[str, bytes] = {}
    for uri, digest in segments.items():
        _check_uri(uri)
        if not isinstance(digest, str) or not _HEX_SHA256.fullmatch(digest):
            raise IntegrityError(f"digest for {uri!r} is not 64 lower-case hex characters")
        digests[uri] = bytes.fromhex(digest)
    return IntegrityList(MappingProxyType(digests))
