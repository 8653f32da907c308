"""Golden tests for the p2pml 2.3.x swarm id / info_hash derivation."""

from __future__ import annotations

import random

import pytest

from core.p2p.swarm_id import (
    info_hash,
    new_peer_id,
    normalize_codecs,
    stream_index,
    stream_swarm_id,
    swarm_id,
)

MANIFEST = "http://127.0.0.1:8080/hls/master.m3u8"


def test_golden_vector_from_capture() -> None:
    index = stream_index(950400, "avc1.42c01e", 640, 360)
    assert index == "/VYP0QOs12rssj9QnUYYOozR/Ro="
    swarm = swarm_id(MANIFEST + "?token=abc")
    sid = stream_swarm_id(swarm, "main", index)
    assert sid == f"v2-{MANIFEST}-main-/VYP0QOs12rssj9QnUYYOozR/Ro="
    assert info_hash(sid) == "i/a4IGfs0WPVgc3Sn/iT"
    assert len(info_hash(sid)) == 20


def test_swarm_id_configured_wins() -> None:
    assert swarm_id(MANIFEST + "?a=1", "custom") == "custom"
    assert swarm_id(MANIFEST) == MANIFEST


def test_codec_normalisation() -> None:
    assert normalize_codecs("MP4A.40.2,AVC1.42C01E") == "avc1.42c01e,mp4a.40.2"
    assert normalize_codecs("avc1.66.30") == "avc1.42001e"
    assert normalize_codecs(None) == ""
    # Upper-case input hashes the same as the captured lower-case one.
    assert stream_index(950400, "AVC1.42C01E", 640, 360) == "/VYP0QOs12rssj9QnUYYOozR/Ro="


def test_bad_kind_rejected() -> None:
    with pytest.raises(ValueError):
        stream_swarm_id("s", "audio", "x")  # type: ignore[arg-type]


def test_peer_id_shape_and_determinism() -> None:
    a = new_peer_id(random.Random(1))
    assert a == new_peer_id(random.Random(1))
    assert a.startswith("-PM0203-") and len(a) == 20 and a[8:].isalnum()
    assert new_peer_id(random.Random(1), (3, 10)).startswith("-PM0310-")
