"""Swarm and peer identifiers compatible with p2p-media-loader 2.3.x.

p2pml peers only meet when they compute the same tracker ``info_hash``, so
every step here mirrors the 2.3.x TypeScript exactly (see the research notes,
section 1a). Pure functions; randomness is an injected ``random.Random``.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import string
from typing import Literal

_PEER_ID_ALPHABET = string.ascii_letters + string.digits
_DECIMAL_AVC1 = re.compile(r"^avc1\.(\d+)\.(\d+)$")


def swarm_id(manifest_url: str, configured: str | None = None) -> str:
    """Return ``configured`` if set, else the manifest URL without its query string."""
    if configured is not None:
        return configured
    return manifest_url.split("?", 1)[0]


def _normalize_codec(codec: str) -> str:
    """Lower-case one codec and turn decimal ``avc1.P.L`` into hex ``avc1.PP00LL``."""
    codec = codec.strip().lower()
    match = _DECIMAL_AVC1.match(codec)
    if match:
        profile, level = int(match.group(1)), int(match.group(2))
        codec = f"avc1.{profile:02x}00{level:02x}"
    return codec


def normalize_codecs(codecs: str | None) -> str:
    """Normalise a CODECS attribute: lower-cased, avc1 in hex, sorted, comma-joined."""
    if not codecs:
        return ""
    parts = [_normalize_codec(c) for c in codecs.split(",") if c.strip()]
    return ",".join(sorted(parts))


def _field(value: object) -> str:
    """Render one id field; a missing field (None) is an empty string."""
    return "" if value is None else str(value)


def stream_index(
    bitrate: int | None,
    codecs: str | None,
    width: int | None,
    height: int | None,
    lang: str | None = None,
    channels: str | None = None,
    name: str | None = None,
    frame_rate: str | None = None,
    video_range: str | None = None,
) -> str:
    """Return the 2.3.x stream index: base64(sha1 of the dash-joined stream fields).

    For video pass ``maxBitrate ?? bitrate``; for audio p2pml uses bitrate 0.
    """
    fields = [
        _field(bitrate),
        normalize_codecs(codecs),
        _field(width),
        _field(height),
        _field(lang),
        _field(channels),
        _field(name),
        _field(frame_rate),
        _field(video_range),
    ]
    digest = hashlib.sha1("-".join(fields).encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


def stream_swarm_id(swarm: str, kind: Literal["main", "secondary"], index: str) -> str:
    """Return ``v2-{swarm}-{kind}-{index}``; kind is ``main`` or ``secondary`` (audio)."""
    if kind not in ("main", "secondary"):
        raise ValueError(f"stream kind must be 'main' or 'secondary', not {kind!r}")
    return f"v2-{swarm}-{kind}-{index}"


def info_hash(stream_swarm: str) -> str:
    """Return btoa(first 15 bytes of sha1(stream_swarm)): a 20-char ASCII string."""
    digest = hashlib.sha1(stream_swarm.encode("utf-8")).digest()
    return base64.b64encode(digest[:15]).decode("ascii")


def new_peer_id(rng: random.Random, version: tuple[int, int] = (2, 3)) -> str:
    """Return ``-PM{major:02}{minor:02}-`` plus 12 random alphanumerics (20 chars)."""
    major, minor = version
    suffix = "".join(rng.choice(_PEER_ID_ALPHABET) for _ in range(12))
    return f"-PM{major:02d}{minor:02d}-{suffix}"
