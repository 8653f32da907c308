"""Packaging with real ffmpeg: an aligned fMP4 ladder, a measured master, an atomic publish."""

import json
import subprocess
from pathlib import Path

import pytest

from manifests import parse_master, parse_media
from origin.ladder import PackagingError, Rung, package_video
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
