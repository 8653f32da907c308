"""Golden tests for the p2pml 2.3.x swarm id / info_hash derivation.

Vectors other than the captured one were computed by running p2p-media-loader-core 2.3.1's own
``generateStreamShortId`` and ``getStreamHash`` (npm package, under node) on the fields given.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from core.p2p.swarm_id import (
    VariantSwarm,
    info_hash,
    js_number,
    js_number_string,
    new_peer_id,
    normalize_codecs,
    stream_index,
    stream_swarm_id,
    swarm_id,
    variant_stream_index,
    video_swarm_id,
    video_swarms,
)
from manifests import MasterPlaylist, Variant, parse_master, render_master

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
    assert normalize_codecs("avc.66.30") == "avc.42001e"
    assert normalize_codecs("avc1.066.30") == "avc1.066.30"  # p2pml converts canonical decimals
    assert normalize_codecs("b,,a") == ",a,b"  # empty items stay, as in p2pml
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


def main_info_hash(swarm: str, index: str) -> str:
    return info_hash(stream_swarm_id(swarm, "main", index))


def test_golden_shoal_rung_with_a_frame_rate() -> None:
    # A rung as Shoal's ladder writes it: hls.js hands p2pml FRAME-RATE as the text "30.000".
    index = stream_index(812345, "avc1.4d401e", 360, 640, frame_rate="30.000")
    assert index == "Rf0cTh99dRvGPzqd0wfDZEtc8f8="
    assert main_info_hash("shoal-sample-testsrc", index) == "0Vas5k84kvvvXTNVGDrG"
    # p2pml normalises through Number(): the same stream however the rate is spelled.
    for spelling in ("30", "30.0", " 30.000 ", "0x1E", "3e1", 30.0):
        assert stream_index(812345, "avc1.4d401e", 360, 640, frame_rate=spelling) == index


def test_golden_every_field_normalised() -> None:
    hdr = stream_index(2512345, "avc1.4d401f", 720, 1280, frame_rate="29.970", video_range="pq")
    assert hdr == "9l2FaM4KK7be2jMmtbs7jxjXbDU="
    assert main_info_hash("shoal-abc", hdr) == "4hVUFedYdioOv2uOSkG1"
    audio = stream_index(0, "mp4a.40.2", None, None, "ENG-us", "2/JOC", " Main ")
    assert audio == "JfDfc8/4rHhh2h4G9R88m7docww="
    # A missing bitrate is 0 and the language "und" is none.
    missing = stream_index(None, None, None, None, lang="und", frame_rate="-Infinity")
    assert missing == "wT5jkMD2v4HnaoaL93aNA0YQC4s="


@pytest.mark.parametrize(
    ("frame_rate", "index"),
    [
        (" 1e21 ", "RTAiNr6vPDFWgQhzkdXCULVC9Go="),
        ("0.0000001", "J/mbxdh9z20jp4afKTblp7wR4Bg="),
        ("abc", "+wvLh7jxj/Uefrdj8LWhPqb/xpE="),  # NaN: no frame rate
        ("  ", "UPZ676f+dPu9OHXnakrhYSMCjzA="),  # Number("  ") is 0
        ("123456789012345678", "lsw24+O7a8nj8BFEQRPjCTcB80k="),
    ],
)
def test_golden_frame_rate_edge_cases(frame_rate: str, index: str) -> None:
    assert stream_index(5, None, None, None, frame_rate=frame_rate) == index


def test_javascript_numbers() -> None:
    assert js_number("0b101") == 5 and js_number("0o17") == 15 and js_number(".5e1") == 5
    assert js_number("") == 0 and js_number("1_000") != js_number("1_000")  # NaN
    assert js_number("-Infinity") == -float("inf")
    strings = {29.97: "29.97", 1e21: "1e+21", 1.5e-7: "1.5e-7", 1e-6: "0.000001", -0.0: "0"}
    for value, text in strings.items():
        assert js_number_string(value) == text
    assert js_number_string(float("nan")) == "NaN"


def test_video_swarm_id() -> None:
    assert video_swarm_id("sample-testsrc") == "shoal-sample-testsrc"
    assert swarm_id("https://edge/v/x/master.m3u8?t=1", video_swarm_id("x")) == "shoal-x"


SHOAL_LADDER = (
    Variant(
        uri="360p/index.m3u8",
        bandwidth=812345,
        average_bandwidth=601234,
        resolution=(360, 640),
        codecs="avc1.4d401e,mp4a.40.2",
        frame_rate=30.0,
    ),
    Variant(
        uri="720p/index.m3u8",
        bandwidth=2400000,
        average_bandwidth=2000000,
        resolution=(720, 1280),
        codecs="avc1.4d401f,mp4a.40.2",
        frame_rate=30.0,
    ),
)
"""Two rungs as `origin.ladder` builds them (measured rates, codecs from the init)."""


def shoal_master() -> MasterPlaylist:
    """A two-rung master as `origin.ladder` builds it (measured rates, codecs from the init),
    through text and back, as a player receives it."""
    text = render_master(MasterPlaylist(SHOAL_LADDER, independent_segments=True))
    assert "FRAME-RATE=30.000" in text and "AVERAGE-BANDWIDTH=601234" in text
    return parse_master(text)


def test_golden_swarms_of_a_shoal_master() -> None:
    # The bitrate is the peak BANDWIDTH, the codecs the video one only (hls.js's videoCodec).
    assert video_swarms("sample-testsrc", shoal_master()) == (
        VariantSwarm("360p/index.m3u8", "0Vas5k84kvvvXTNVGDrG"),
        VariantSwarm("720p/index.m3u8", "QDqaMOF/Tj622gqYupbL"),
    )
    # The lowest-rung-first master gives its rung the swarm the full master gives it.
    lowest = MasterPlaylist(shoal_master().variants[:1])
    assert (
        video_swarms("sample-testsrc", lowest) == video_swarms("sample-testsrc", shoal_master())[:1]
    )


def test_variant_bitrate_and_codecs_as_hlsjs_reads_them() -> None:
    base = Variant(uri="a.m3u8", bandwidth=500, resolution=(360, 640), frame_rate=25.0)
    golden = "PG+/42gFdU5KzKcBt4GGKHa/k8o="
    assert main_info_hash("shoal-x", golden) == "IHi+TXq55nvyJW4ZekST"
    # hls.js rewrites decimal avc1 as hex and drops audio; BANDWIDTH 0 falls back to the average.
    for variant in (
        replace(base, codecs="avc1.77.30,mp4a.40.2"),
        replace(base, codecs="mp4a.40.2 avc1.4d001e"),
        replace(base, bandwidth=0, average_bandwidth=500, codecs="avc1.4d001e"),
    ):
        assert variant_stream_index(variant) == golden
    # hls.js classifies codecs case-sensitively: upper-case AVC1 is no video codec to it.
    upper = replace(base, codecs="AVC1.4D001E")
    assert variant_stream_index(upper) == stream_index(500, None, 360, 640, frame_rate=25.0)
    # A bitrate of 0 (BANDWIDTH and AVERAGE-BANDWIDTH) hides every other field.
    zero = replace(base, bandwidth=0, average_bandwidth=0)
    assert variant_stream_index(zero) == "UYnLxGhQilEV4D0HbCx+kRv0ZF0="
    with pytest.raises(ValueError, match="NaN"):
        variant_stream_index(replace(base, bandwidth=0))
