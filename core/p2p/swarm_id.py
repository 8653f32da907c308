"""Swarm and peer identifiers compatible with p2p-media-loader 2.3.x.

p2pml peers only meet when they compute the same tracker ``info_hash``, so
every step here mirrors the 2.3.x TypeScript exactly (see the research notes,
section 1a), and ``variant_stream_index`` mirrors what hls.js 1.6 (the version
p2p-media-loader-hlsjs 2.3 depends on) hands it for a variant stream. Pure
functions; randomness is an injected ``random.Random``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
import string
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from manifests import MasterPlaylist, Variant

_PEER_ID_ALPHABET = string.ascii_letters + string.digits
_DECIMAL_AVC1 = re.compile(r"^(avc1?)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_JS_INT_PREFIX = re.compile(r"\s*([+-]?\d+)")
# ECMAScript StringNumericLiteral (what JS ``Number(text)`` accepts), leading and trailing white
# space aside: a decimal with optional exponent, an optionally signed Infinity, or a binary,
# octal or hex integer. Anything else is NaN.
_JS_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_JS_RADIX = re.compile(r"0(?:[bB](?P<b>[01]+)|[oO](?P<o>[0-7]+)|[xX](?P<x>[0-9a-fA-F]+))")
# hls.js 1.6 ``sampleEntryCodesISO.video``: the four-character codes it files under videoCodec.
_HLSJS_VIDEO_CODES = frozenset(
    {
        "avc1", "avc2", "avc3", "avc4", "avcp", "av01", "dav1", "drac", "dva1", "dvav", "dvh1",
        "dvhe", "encv", "hev1", "hvc1", "mjp2", "mp4v", "mvc1", "mvc2", "mvc3", "mvc4", "resv",
        "rv60", "s263", "svc1", "svc2", "vc-1", "vp08", "vp09",
    }
)  # fmt: skip
SHOAL_SWARM_PREFIX = "shoal-"


def swarm_id(manifest_url: str, configured: str | None = None) -> str:
    """Return ``configured`` if set, else the manifest URL without its query string."""
    if configured is not None:
        return configured
    return manifest_url.split("?", 1)[0]


def video_swarm_id(video_id: str) -> str:
    """Return the ``swarmId`` Shoal's players give p2pml for the video ``/v/<video_id>/``.

    A configured swarm id, unlike the default (the manifest URL), is the same whichever edge
    served the master and whatever signed-URL token it carried, so every viewer of a video
    meets the others, and the origin can compute each rendition's info_hash on its own.
    """
    return f"{SHOAL_SWARM_PREFIX}{video_id}"


def _normalize_codec(codec: str) -> str:
    """Lower-case one codec and turn decimal ``avc1.P.L`` into hex ``avc1.PP00LL``.

    As p2pml does: only canonical decimals (no leading zeros) are converted, ``avc`` too.
    """
    codec = codec.strip().lower()
    match = _DECIMAL_AVC1.match(codec)
    if match:
        kind, profile, level = match.group(1), int(match.group(2)), int(match.group(3))
        codec = f"{kind}.{profile:02x}00{level:02x}"
    return codec


def normalize_codecs(codecs: str | None) -> str:
    """Normalise a CODECS value: lower-cased, avc1 in hex, sorted, comma-joined.

    Empty items are kept (``"a,,b"`` sorts to ``",a,b"``): p2pml does not drop them either.
    """
    if not codecs:
        return ""
    return ",".join(sorted(_normalize_codec(c) for c in codecs.split(",")))


def _field(value: object) -> str:
    """Render one id field; a missing field (None) is an empty string."""
    return "" if value is None else str(value)


def js_number(text: str) -> float:
    """What JavaScript's ``Number(text)`` gives: NaN for anything it cannot read, 0 for blanks
    (white space as `str.strip` sees it, which differs from JavaScript's only for rare
    characters).

    p2pml normalises FRAME-RATE through it, so ``"30.000"``, ``"30"`` and ``"0x1E"`` are one
    stream to the browser and must be one here.
    """
    text = text.strip()
    if not text:
        return 0.0
    radix = _JS_RADIX.fullmatch(text)
    if radix:
        base, digits = next((k, v) for k, v in radix.groupdict().items() if v is not None)
        return float(int(digits, {"b": 2, "o": 8, "x": 16}[base]))
    if _JS_DECIMAL.fullmatch(text):
        return float(text.replace("Infinity", "inf"))
    return math.nan


def js_number_string(value: float) -> str:
    """What JavaScript's ``String(value)`` gives (ECMAScript Number::toString, radix 10)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    if value < 0:
        return "-" + js_number_string(-value)
    # repr gives the shortest digits that round-trip, which is what ECMAScript asks for too.
    _, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)  # a finite value
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = exponent + k  # the value is 0.<digits> * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{mantissa}e{'+' if n > 0 else '-'}{abs(n - 1)}"


def _frame_rate_field(frame_rate: float | str | None) -> str:
    """p2pml: ``frameRate && !isNaN(Number(frameRate)) ? Number(frameRate).toString() : ""``."""
    if not frame_rate:  # None, "" and 0 are falsy in JavaScript too
        return ""
    number = js_number(frame_rate) if isinstance(frame_rate, str) else frame_rate
    return "" if math.isnan(number) else js_number_string(number)


def stream_index(
    bitrate: int | None,
    codecs: str | None,
    width: int | None,
    height: int | None,
    lang: str | None = None,
    channels: str | None = None,
    name: str | None = None,
    frame_rate: float | str | None = None,
    video_range: str | None = None,
) -> str:
    """Return the 2.3.x stream index: base64(sha1 of the dash-joined stream fields).

    The fields are normalised as p2pml's ``generateStreamShortId`` does: a missing bitrate is
    0; codecs by `normalize_codecs`; the language cut to two lower-case letters (``und`` is
    none); channels up to the first ``/``; the name lower-cased and stripped; the frame rate
    through JavaScript ``Number`` (``"30.000"`` is ``30``); the video range upper-cased. For
    video pass ``maxBitrate ?? bitrate`` and only the video codecs (`variant_stream_index`
    does both for a master playlist's variant); for audio p2pml uses bitrate 0.
    """
    fields = [
        _field(0 if bitrate is None else bitrate),
        normalize_codecs(codecs),
        _field(width),
        _field(height),
        lang[:2].lower() if lang and lang != "und" else "",
        channels.split("/", 1)[0] if channels else "",
        name.lower().strip() if name else "",
        _frame_rate_field(frame_rate),
        video_range.upper().strip() if video_range else "",
    ]
    digest = hashlib.sha1("-".join(fields).encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


def _hlsjs_video_codecs(codecs: str | None) -> str | None:
    """A level's ``videoCodec`` as hls.js 1.6 sets it from CODECS: the items (split on spaces
    and commas) whose first four characters are a video sample entry code, case-sensitively,
    each cut at a ``/``, comma-joined, then decimal ``avc1.P.L`` rewritten as hex
    (``convertAVC1ToAVCOTI``); None when there is none."""
    items = [item for item in re.split(r"[ ,]+", codecs or "") if item]
    video = [item.split("/", 1)[0] for item in items if item[:4] in _HLSJS_VIDEO_CODES]
    if not video:
        return None
    converted = []
    for codec in video:
        parts = codec.split(".")
        if len(parts) > 2 and parts[0] == "avc1":
            codec = (
                f"avc1.{_js_parse_int_hex(parts[1])}{('000' + _js_parse_int_hex(parts[2]))[-4:]}"
            )
        converted.append(codec)
    return ",".join(converted)


def _js_parse_int_hex(text: str) -> str:
    """JavaScript's ``parseInt(text).toString(16)``: the leading decimal digits, in hex."""
    match = _JS_INT_PREFIX.match(text)
    if match is None:
        return "NaN"
    value = int(match.group(1))
    return f"{'-' if value < 0 else ''}{abs(value):x}"


def variant_stream_index(variant: Variant) -> str:
    """The stream index p2pml-hlsjs 2.3 computes for the hls.js level of `variant`.

    hls.js gives the level ``bitrate`` = BANDWIDTH, or AVERAGE-BANDWIDTH when BANDWIDTH is 0,
    and no ``maxBitrate`` (that is a getter of its later ``Level`` objects), so p2pml's
    ``maxBitrate ?? bitrate`` is that bitrate; the codecs are the video ones only; FRAME-RATE
    is the attribute's text, which `manifests` parsed into the float JavaScript's ``Number``
    gives too. A level whose bitrate is 0 is hashed from its bitrate alone. The model has no
    VIDEO-RANGE, which Shoal's masters never carry (SDR), so an HDR variant of another master
    cannot be derived from it.
    """
    bitrate = variant.bandwidth or variant.average_bandwidth
    if bitrate is None:
        raise ValueError(f"{variant.uri}: BANDWIDTH=0 without AVERAGE-BANDWIDTH hashes as NaN")
    if bitrate == 0:
        return stream_index(0, None, None, None)
    width, height = variant.resolution if variant.resolution is not None else (None, None)
    return stream_index(
        bitrate,
        _hlsjs_video_codecs(variant.codecs),
        width,
        height,
        frame_rate=variant.frame_rate,
    )


@dataclass(frozen=True)
class VariantSwarm:
    """The tracker swarm of one variant stream: its URI as the master lists it, its info_hash."""

    uri: str
    info_hash: str


def video_swarms(video_id: str, master: MasterPlaylist) -> tuple[VariantSwarm, ...]:
    """The swarm of each variant of `master`, in its order, for players of ``/v/<video_id>/``
    configured with `video_swarm_id`: what their p2pml computes, so the origin can vouch for
    exactly those info_hashes."""
    swarm = video_swarm_id(video_id)
    return tuple(
        VariantSwarm(
            variant.uri, info_hash(stream_swarm_id(swarm, "main", variant_stream_index(variant)))
        )
        for variant in master.variants
    )


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
