"""Packaging with real ffmpeg: an aligned fMP4 ladder, a measured master, an atomic publish; and
the pure parts of the ladder: which rungs a source gets, at which frame rate."""

import itertools
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifests import parse_master, parse_media
from origin.ladder import PackagingError, Rung, output_frame_rate, package_video, plan_ladder
from origin.store.fs import FilesystemStore

RUNGS = (Rung("180p", 180, 320, 300, audio_kbps=64), Rung("360p", 360, 640, 600, audio_kbps=64))
SECONDS = 5  # two full 2-second segments and a short last one


def _lavfi(seconds: int) -> list[str]:
    return [
        "-t", str(seconds), "-f", "lavfi", "-i", "testsrc2=size=360x640:rate=30",
        "-t", str(seconds), "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> FilesystemStore:
    store = FilesystemStore(tmp_path_factory.mktemp("store"))
    package_video(store, "clip", _lavfi(SECONDS), RUNGS, audio_input=1)
    return store


def _ffprobe_streams(path: Path) -> list[dict[str, object]]:
    output = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    streams: list[dict[str, object]] = json.loads(output)["streams"]
    return streams


def test_master_states_measured_bitrates_codecs_and_resolutions(packaged: FilesystemStore) -> None:
    master = parse_master(packaged.read("videos/clip/master.m3u8").decode())
    assert [v.uri for v in master.variants] == ["180p/index.m3u8", "360p/index.m3u8"]
    for variant, rung in zip(master.variants, RUNGS, strict=True):
        assert variant.resolution == (rung.width, rung.height)
        assert variant.codecs is not None
        assert variant.codecs.startswith("avc1.") and "mp4a.40.2" in variant.codecs
        media = parse_media(packaged.read(f"videos/clip/{variant.uri}").decode())
        sizes = [packaged.stat(f"videos/clip/{rung.name}/{s.uri}").size for s in media.segments]
        rates = [size * 8 / s.duration for size, s in zip(sizes, media.segments, strict=True)]
        assert variant.bandwidth == round(max(rates))
        assert variant.average_bandwidth == round(sum(sizes) * 8 / media.total_duration)
    assert master.variants[0].bandwidth < master.variants[1].bandwidth


def test_segments_are_aligned_two_second_fmp4(packaged: FilesystemStore) -> None:
    timelines = []
    for rung in RUNGS:
        media = parse_media(packaged.read(f"videos/clip/{rung.name}/index.m3u8").decode())
        assert media.init is not None and media.endlist
        assert media.target_duration == 2
        timelines.append([round(s.duration, 3) for s in media.segments])
    assert timelines[0] == timelines[1]
    assert timelines[0][:2] == [2.0, 2.0]
    assert sum(timelines[0]) == pytest.approx(SECONDS, abs=0.1)


def test_init_and_segment_decode_to_the_rung(packaged: FilesystemStore, tmp_path: Path) -> None:
    rung = RUNGS[1]
    media = parse_media(packaged.read(f"videos/clip/{rung.name}/index.m3u8").decode())
    assert media.init is not None
    joined = tmp_path / "first.mp4"
    joined.write_bytes(
        packaged.read(f"videos/clip/{rung.name}/{media.init.uri}")
        + packaged.read(f"videos/clip/{rung.name}/{media.segments[0].uri}")
    )
    streams = {s["codec_type"]: s for s in _ffprobe_streams(joined)}
    assert (streams["video"]["width"], streams["video"]["height"]) == (rung.width, rung.height)
    assert streams["video"]["codec_name"] == "h264"
    assert streams["audio"]["codec_name"] == "aac"


def test_video_without_audio(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    video_only = ["-t", "2", "-f", "lavfi", "-i", "testsrc2=size=180x320:rate=30"]
    package_video(store, "mute", video_only, RUNGS[:1], audio_input=None)
    master = parse_master(store.read("videos/mute/master.m3u8").decode())
    assert master.variants[0].codecs is not None
    assert "mp4a" not in master.variants[0].codecs


def test_a_failed_encode_publishes_nothing(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    not_a_video = tmp_path / "junk.bin"
    not_a_video.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(PackagingError, match="ffmpeg exited"):
        package_video(store, "junk", ["-i", str(not_a_video)], RUNGS, audio_input=0)
    assert list(store.list("videos/")) == []


# ---- plan_ladder and output_frame_rate ----------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (360, 640, [("360p", 360, 640, 680)]),
        (720, 1280, [("360p", 360, 640, 680), ("720p", 720, 1280, 2370)]),
        (
            1920,
            1080,
            [("360p", 640, 360, 680), ("720p", 1280, 720, 2370), ("1080p", 1920, 1080, 4910)],
        ),
        (
            3840,
            2160,
            [("360p", 640, 360, 680), ("720p", 1280, 720, 2370), ("1080p", 1920, 1080, 4910)],
        ),
        (
            1080,
            1080,
            [("360p", 360, 360, 680), ("720p", 720, 720, 2370), ("1080p", 1080, 1080, 4910)],
        ),
        (719, 1279, [("360p", 360, 640, 680)]),
        (241, 427, [("240p", 240, 426, 302)]),
    ],
)
def test_plan_ladder(width: int, height: int, expected: list[tuple[str, int, int, int]]) -> None:
    rungs = plan_ladder(width, height)
    assert [(r.name, r.width, r.height, r.video_kbps) for r in rungs] == expected


@given(st.integers(2, 4096), st.integers(2, 4096))
def test_plan_ladder_keeps_the_picture_and_never_upscales(width: int, height: int) -> None:
    rungs = plan_ladder(width, height)
    short, long = min(width, height), max(width, height)
    named = [side for side in (360, 720, 1080) if side <= short] or [short - short % 2]
    assert [rung.name for rung in rungs] == [f"{side}p" for side in named]
    for rung, side in zip(rungs, named, strict=True):
        assert rung.width % 2 == 0 and rung.height % 2 == 0 and min(rung.width, rung.height) > 0
        assert rung.width <= width and rung.height <= height
        # The orientation is kept, unless evening out the sides makes a tiny picture square
        # (a 3x2 source becomes 2x2).
        square = rung.width == rung.height
        assert (rung.width <= rung.height) == (width <= height) or width == height or square
        rung_short, rung_long = min(rung.width, rung.height), max(rung.width, rung.height)
        assert rung_short == side
        # The aspect ratio, to the rounding of the long side to an even number of pixels.
        assert abs(rung_long - long * side / short) <= 2
    assert all(a.video_kbps < b.video_kbps for a, b in itertools.pairwise(rungs))
    assert all(a.width < b.width and a.height < b.height for a, b in itertools.pairwise(rungs))


def test_plan_ladder_refuses_a_size_without_pixels() -> None:
    with pytest.raises(ValueError, match="0x640"):
        plan_ladder(0, 640)


SMALL = plan_ladder(360, 640)
LARGE = plan_ladder(720, 1280)


@pytest.mark.parametrize(
    ("source", "rungs", "expected"),
    [
        (Fraction(30), SMALL, Fraction(30)),
        (Fraction(60), SMALL, Fraction(30)),
        (Fraction(60), LARGE, Fraction(60)),
        (Fraction(120), LARGE, Fraction(60)),
        (Fraction(240), SMALL, Fraction(30)),
        (Fraction(100), LARGE, Fraction(50)),
        (Fraction(50), SMALL, Fraction(25)),
        (Fraction(25), LARGE, Fraction(25)),
        (Fraction(60000, 1001), SMALL, Fraction(30000, 1001)),
        (Fraction(2997, 100), SMALL, Fraction(30000, 1001)),  # within 2%: snapped
        (Fraction(61, 2), SMALL, Fraction(30)),  # 30.5 is 30 a little off
        (Fraction(31), SMALL, Fraction(31, 2)),  # 31 is not: halved
        (Fraction(7), SMALL, Fraction(7)),
    ],
)
def test_output_frame_rate(source: Fraction, rungs: tuple[Rung, ...], expected: Fraction) -> None:
    assert output_frame_rate(source, rungs) == expected


@given(st.fractions(min_value=1, max_value=1000))
def test_output_frame_rate_is_a_whole_fraction_of_the_source_within_the_cap(rate: Fraction) -> None:
    for rungs, ceiling in ((SMALL, 30), (LARGE, 60)):
        chosen = output_frame_rate(rate, rungs)
        assert 0 < chosen <= ceiling
        divisor = round(rate / chosen)
        assert divisor >= 1 and abs(rate / divisor - chosen) <= chosen * Fraction(2, 100)
