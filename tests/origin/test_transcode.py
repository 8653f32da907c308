"""Transcoding uploads with real ffprobe and ffmpeg: validation, the ladder, what gets published
and in which order, integrity lists, failures, and an ffmpeg that never outlives its worker."""

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

import origin.transcode
from manifests import MasterPlaylist, parse_master, parse_media, validate_master
from origin.ladder import PackagingError, spawn_ffmpeg
from origin.store.base import ContentStore, ObjectInfo
from origin.store.fs import FilesystemStore
from origin.transcode import (
    CORRUPT,
    NOT_A_VIDEO,
    PackageResult,
    RejectedSource,
    SourceInfo,
    probe_source,
    transcode,
)

REPO = Path(__file__).resolve().parents[2]
SECONDS = 2
# What probe_source says of the 360x640 clip without audio; for sources ffprobe never sees.
INFO_360 = SourceInfo(360, 640, float(SECONDS), Fraction(30), False, "h264", 0)


class Boom(Exception):
    pass


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def make_clip(
    path: Path, size: str, *, audio: bool, rate: int = 30, seconds: float = SECONDS
) -> Path:
    inputs = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-c:a", "aac"]
    ffmpeg(*inputs, "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", str(path))
    return path


@dataclass(frozen=True)
class Clips:
    small: Path
    """360x640 with audio: a one-rung ladder."""
    tall: Path
    """720x1280 without audio: 360p and 720p."""


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    folder = tmp_path_factory.mktemp("clips")
    return Clips(
        small=make_clip(folder / "small.mp4", "360x640", audio=True),
        tall=make_clip(folder / "tall.mp4", "720x1280", audio=False),
    )


class RecordingStore(ContentStore):
    """A filesystem store that remembers its writes and deletes, in order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inner = FilesystemStore(root)
        self.events: list[tuple[str, str]] = []

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def read(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        return self.inner.read(key, start, length)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        self.events.append(("put", key))
        return self.inner.put_bytes(key, data)

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        self.events.append(("put", key))
        return self.inner.put_file(key, path)

    def delete(self, key: str) -> None:
        self.events.append(("delete", key))
        self.inner.delete(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)


@dataclass
class Packaged:
    store: RecordingStore
    source: Path
    result: PackageResult
    lowest: list[PackageResult] = field(default_factory=list)
    """What `on_lowest_ready` was given, once per call."""
    events_at_lowest: int = 0
    master_at_lowest: MasterPlaylist | None = None
    progress: list[float] = field(default_factory=list)


def package(source: Path, root: Path, package_id: str) -> Packaged:
    store = RecordingStore(root / "store")
    seen: dict[str, Any] = {"lowest": [], "progress": []}

    def lowest_ready(result: PackageResult) -> None:
        seen["lowest"].append(result)
        seen["events"] = len(store.events)
        seen["master"] = parse_master(store.read(result.master_key).decode())

    result = transcode(
        source,
        store,
        package_id,
        on_lowest_ready=lowest_ready,
        progress=seen["progress"].append,
        work_dir=root,
    )
    return Packaged(
        store, source, result, seen["lowest"], seen["events"], seen["master"], seen["progress"]
    )


@pytest.fixture(scope="module")
def small(clips: Clips, tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    return package(clips.small, tmp_path_factory.mktemp("small"), "small")


@pytest.fixture(scope="module")
def tall(clips: Clips, tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    return package(clips.tall, tmp_path_factory.mktemp("tall"), "tall")


@pytest.fixture(params=["small", "tall"])
def packaged(request: pytest.FixtureRequest) -> Packaged:
    result: Packaged = request.getfixturevalue(request.param)
    return result


def ffprobe_json(path: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_streams", *args, str(path)],
        capture_output=True,
        check=True,
        text=True,
    )
    assert done.stderr == ""
    report: dict[str, Any] = json.loads(done.stdout)
    return report


# ---- probe_source -------------------------------------------------------------------------------


def test_probe_describes_a_clip(clips: Clips) -> None:
    info = probe_source(clips.small)
    assert info.duration == pytest.approx(SECONDS, abs=0.05)
    assert dataclasses.replace(info, duration=SECONDS) == SourceInfo(
        width=360,
        height=640,
        duration=SECONDS,
        frame_rate=Fraction(30),
        has_audio=True,
        video_codec="h264",
        video_stream=0,
    )
    assert not probe_source(clips.tall).has_audio


@pytest.mark.parametrize(
    ("metadata", "size"),
    [
        (["-metadata:s:v:0", "rotate=90"], (640, 360)),
        (["-metadata:s:v:0", "rotate=180"], (360, 640)),
        (["-aspect", "9:8"], (720, 640)),  # pixels twice as wide as high
    ],
)
def test_probe_reports_the_displayed_size(
    clips: Clips, tmp_path: Path, metadata: list[str], size: tuple[int, int]
) -> None:
    shown = tmp_path / "shown.mp4"
    ffmpeg("-i", str(clips.small), "-c", "copy", *metadata, str(shown))
    info = probe_source(shown)
    assert (info.width, info.height) == size


def _garble(data: bytes) -> bytes:
    """Overwrite 3 kB at the start of the media data (the first keyframe and audio frames)."""
    start = data.index(b"mdat") + 200
    noise = random.Random(7).randbytes(3000)
    return data[:start] + noise + data[start + len(noise) :]


@pytest.fixture(scope="module")
def bad_sources(clips: Clips, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    moov_first = folder / "moov-first.mp4"
    ffmpeg("-i", str(clips.small), "-c", "copy", "-movflags", "+faststart", str(moov_first))
    whole = moov_first.read_bytes()
    sources = {
        "text": folder / "notes.mp4",
        "missing": folder / "missing.mp4",
        "truncated": folder / "truncated.mp4",
        "truncated, index last": folder / "truncated-moov-last.mp4",
        "garbled": folder / "garbled.mp4",
        "playlist": folder / "playlist.m3u8",
        "nut container": folder / "clip.nut",
    }
    sources["text"].write_text("just some notes\n")
    sources["truncated"].write_bytes(whole[: len(whole) * 6 // 10])
    last = clips.small.read_bytes()
    sources["truncated, index last"].write_bytes(last[: len(last) * 6 // 10])
    sources["garbled"].write_bytes(_garble(whole))
    sources["playlist"].write_text(f"#EXTM3U\n#EXTINF:2,\n{clips.small}\n#EXT-X-ENDLIST\n")
    ffmpeg("-i", str(clips.small), "-c", "copy", str(sources["nut container"]))
    sources["audio only"] = folder / "song.m4a"
    ffmpeg(
        "-f", "lavfi", "-i", "sine=sample_rate=48000", "-f", "lavfi", "-i", "color=red:size=64x64",
        "-t", "1", "-map", "0:a", "-map", "1:v", "-frames:v", "1", "-c:a", "aac", "-c:v", "png",
        "-disposition:v:0", "attached_pic", str(sources["audio only"]),
    )  # fmt: skip
    sources["too small"] = make_clip(folder / "tiny.mp4", "48x64", audio=False, seconds=0.5)
    sources["too large"] = make_clip(folder / "wide.mp4", "4112x64", audio=False, seconds=0.2)
    sources["1000 fps"] = make_clip(
        folder / "fast.mp4", "128x128", audio=False, rate=1000, seconds=0.2
    )
    return sources


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("text", NOT_A_VIDEO),
        ("missing", NOT_A_VIDEO),
        ("truncated, index last", NOT_A_VIDEO),
        ("playlist", NOT_A_VIDEO),
        ("nut container", NOT_A_VIDEO),
        ("audio only", "no video stream"),
        ("truncated", CORRUPT),
        ("garbled", CORRUPT),
        ("too small", "the video is smaller than 64 px"),
        ("too large", "the video is larger than 4096 px"),
        ("1000 fps", "unsupported frame rate"),
    ],
)
def test_probe_rejects(bad_sources: dict[str, Path], name: str, reason: str) -> None:
    with pytest.raises(RejectedSource) as rejected:
        probe_source(bad_sources[name])
    assert str(rejected.value) == reason


def test_probe_rejects_a_video_longer_than_allowed(clips: Clips) -> None:
    with pytest.raises(RejectedSource, match=r"^the video is longer than 1.5 s$") as rejected:
        probe_source(clips.small, max_duration=1.5)
    assert rejected.value.detail == "2 s"


# ---- transcode: what is published ---------------------------------------------------------------


def test_the_ladder_never_upscales(small: Packaged, tall: Packaged) -> None:
    assert [(r.name, r.width, r.height) for r in small.result.rungs] == [("360p", 360, 640)]
    assert [(r.name, r.width, r.height) for r in tall.result.rungs] == [
        ("360p", 360, 640),
        ("720p", 720, 1280),
    ]


def test_the_master_states_what_was_measured(packaged: Packaged) -> None:
    store, result = packaged.store, packaged.result
    master = parse_master(store.read(result.master_key).decode())
    assert validate_master(master) == []
    assert [v.uri for v in master.variants] == [f"{r.name}/index.m3u8" for r in result.rungs]
    has_audio = probe_source(packaged.source).has_audio
    for variant, rung in zip(master.variants, result.rungs, strict=True):
        media = parse_media(store.read(f"videos/{result.package_id}/{variant.uri}").decode())
        sizes = [
            store.stat(f"videos/{result.package_id}/{rung.name}/{s.uri}").size * 8
            for s in media.segments
        ]
        peak = max(bits / s.duration for bits, s in zip(sizes, media.segments, strict=True))
        assert variant.bandwidth == rung.bandwidth == round(peak)
        assert variant.average_bandwidth == rung.average_bandwidth
        assert rung.average_bandwidth == round(sum(sizes) / media.total_duration)
        assert variant.resolution == (rung.width, rung.height)
        assert variant.codecs == rung.codecs
        assert rung.codecs.startswith("avc1.4d")  # H.264 Main
        assert rung.codecs.endswith(",mp4a.40.2") == has_audio
        assert variant.frame_rate == 30.0
        assert rung.segment_count == len(media.segments)
    assert result.duration == pytest.approx(SECONDS, abs=0.1)


def test_ffprobe_plays_the_stored_master(packaged: Packaged) -> None:
    master = packaged.store.root / packaged.result.master_key
    streams = ffprobe_json(master, "-count_frames")["streams"]
    videos = {
        (s["width"], s["height"]): int(s["nb_read_frames"])
        for s in streams
        if s["codec_type"] == "video"
    }
    assert videos == {(r.width, r.height): SECONDS * 30 for r in packaged.result.rungs}
    has_audio = probe_source(packaged.source).has_audio
    assert any(s["codec_type"] == "audio" for s in streams) == has_audio


def test_integrity_lists_hash_every_file_of_the_playlist(packaged: Packaged) -> None:
    store, prefix = packaged.store, f"videos/{packaged.result.package_id}"
    for rung in packaged.result.rungs:
        media = parse_media(store.read(f"{prefix}/{rung.name}/index.m3u8").decode())
        assert media.init is not None
        listed = json.loads(store.read(f"{prefix}/{rung.name}/integrity.json"))
        assert listed["version"] == 1 and listed["algorithm"] == "sha256"
        uris = [media.init.uri] + [s.uri for s in media.segments]
        assert sorted(listed["segments"]) == sorted(uris)
        for uri in uris:
            stored = store.read(f"{prefix}/{rung.name}/{uri}")
            assert listed["segments"][uri] == hashlib.sha256(stored).hexdigest()


def test_the_poster_is_a_still_at_the_lowest_rungs_size(packaged: Packaged) -> None:
    poster = packaged.store.root / packaged.result.poster_key
    (stream,) = ffprobe_json(poster)["streams"]
    lowest = packaged.result.rungs[0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == (
        "mjpeg",
        lowest.width,
        lowest.height,
    )


def test_progress_climbs_to_one(packaged: Packaged) -> None:
    assert packaged.progress, "no progress reported"
    assert packaged.progress == sorted(packaged.progress)
    assert packaged.progress[0] >= 0 and packaged.progress[-1] == 1.0


def test_the_lowest_rung_is_published_first_and_the_full_master_last(tall: Packaged) -> None:
    events, prefix = tall.store.events, "videos/tall/"
    master = prefix + "master.m3u8"
    assert events[0] == ("delete", master)

    def puts(match: Callable[[str], bool]) -> list[int]:
        return [i for i, (op, key) in enumerate(events) if op == "put" and match(key)]

    first_master, last_master = puts(lambda key: key == master)
    (poster,) = puts(lambda key: key == prefix + "poster.jpg")
    lowest = puts(lambda key: key.startswith(prefix + "360p/"))
    higher = puts(lambda key: key.startswith(prefix + "720p/"))
    assert max(lowest) < poster < first_master < min(higher)
    assert max(higher) < last_master
    assert all(op == "delete" for op, _ in events[last_master + 1 :])
    for rung in ("360p", "720p"):
        keys = [key for op, key in events if op == "put" and key.startswith(f"{prefix}{rung}/")]
        # Files first, then the list of their hashes, then the playlist naming them.
        assert keys[-2:] == [f"{prefix}{rung}/integrity.json", f"{prefix}{rung}/index.m3u8"]

    (so_far,) = tall.lowest
    assert [rung.name for rung in so_far.rungs] == ["360p"]
    assert so_far.rungs[0] == tall.result.rungs[0]
    assert tall.events_at_lowest == first_master + 1
    assert tall.master_at_lowest is not None
    assert [v.uri for v in tall.master_at_lowest.variants] == ["360p/index.m3u8"]


def test_a_new_run_replaces_the_previous_one(clips: Clips, tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "store")
    transcode(clips.small, store, "again", work_dir=tmp_path)
    before = set(store.list("videos/again/"))
    store.events.clear()
    transcode(clips.small, store, "again", work_dir=tmp_path)
    after = set(store.list("videos/again/"))

    assert store.events[0] == ("delete", "videos/again/master.m3u8")
    assert after == {key for op, key in store.events if op == "put"}
    media = {key for key in before | after if key.endswith((".mp4", ".m4s"))}
    # Segment names are new in each run (caches keep segments forever), and the old ones go.
    assert media & before and media & after and not media & before & after
    assert before - after == media & before
    assert {("delete", key) for key in before - after} <= set(store.events)
    assert list(tmp_path.glob("shoal-transcode-*")) == []


# ---- transcode: failures ------------------------------------------------------------------------


def test_an_undecodable_source_fails_and_leaves_no_master(tmp_path: Path) -> None:
    source = tmp_path / "junk.mp4"
    source.write_bytes(b"\x00garbage" * 1000)
    store = FilesystemStore(tmp_path / "store")
    store.put_bytes("videos/junk/master.m3u8", b"#EXTM3U\n")  # an earlier run's
    with pytest.raises(PackagingError, match="ffmpeg exited with status") as failed:
        transcode(source, store, "junk", info=INFO_360, work_dir=tmp_path)
    assert "junk.mp4" in str(failed.value)  # the tail of ffmpeg's complaint
    assert list(store.list("videos/")) == []
    assert list(tmp_path.glob("shoal-transcode-*")) == []


def test_a_failure_after_the_lowest_rung_keeps_its_master(clips: Clips, tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "store")

    def fail(result: PackageResult) -> None:
        raise Boom

    with pytest.raises(Boom):
        transcode(clips.tall, store, "half", on_lowest_ready=fail, work_dir=tmp_path)
    master = parse_master(store.read("videos/half/master.m3u8").decode())
    assert [v.uri for v in master.variants] == ["360p/index.m3u8"]
    assert not store.exists("videos/half/720p/index.m3u8")


def test_an_exception_from_progress_kills_ffmpeg(
    clips: Clips, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []

    def spawn_at_native_speed(
        command: Sequence[str], log: Path, *, pipe_stdout: bool = False
    ) -> subprocess.Popen[bytes]:
        # -re: ffmpeg reads the 2 s source in 2 s, so it is still running at its first report.
        at = list(command).index("-i")
        process = spawn_ffmpeg([*command[:at], "-re", *command[at:]], log, pipe_stdout=pipe_stdout)
        started.append(process)
        return process

    monkeypatch.setattr(origin.transcode, "spawn_ffmpeg", spawn_at_native_speed)

    def stop(fraction: float) -> None:
        raise Boom

    store = FilesystemStore(tmp_path / "store")
    with pytest.raises(Boom):
        transcode(clips.small, store, "stopped", progress=stop, work_dir=tmp_path)
    (process,) = started
    assert process.returncode == -signal.SIGKILL
    assert not store.exists("videos/stopped/master.m3u8")


def test_a_transcode_past_its_time_limit_is_stopped(tmp_path: Path) -> None:
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)  # ffmpeg waits for it forever
    store = FilesystemStore(tmp_path / "store")
    started = time.monotonic()
    with pytest.raises(PackagingError, match="time limit"):
        transcode(fifo, store, "slow", info=INFO_360, work_dir=tmp_path, timeout=0.5)
    assert time.monotonic() - started < 5
    assert list(tmp_path.glob("shoal-transcode-*")) == []


CHILD = """
import sys
from fractions import Fraction
from pathlib import Path

from origin.store.fs import FilesystemStore
from origin.transcode import SourceInfo, transcode

source, store, work = map(Path, sys.argv[1:])
info = SourceInfo(360, 640, 2.0, Fraction(30), False, "h264", 0)
transcode(source, FilesystemStore(store), "orphan", info=info, work_dir=work)
"""


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return None


def _is_dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie has died; its new parent has not reaped it yet


def test_ffmpeg_dies_with_the_python_process(tmp_path: Path) -> None:
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)  # ffmpeg waits for it forever: only its parent's death can end it
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(fifo), str(tmp_path / "store"), str(tmp_path)],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    encoder = None
    try:
        deadline = time.monotonic() + 20
        while encoder is None and child.poll() is None and time.monotonic() < deadline:
            encoder = next((p for p in _children(child.pid) if _name(p) == "ffmpeg"), None)
            time.sleep(0.05)
        assert encoder is not None, child.communicate(timeout=5)[1].decode()
        child.kill()
        child.wait()
        deadline = time.monotonic() + 5
        while not _is_dead(encoder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _is_dead(encoder)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()
        if encoder is not None and not _is_dead(encoder) and _name(encoder) == "ffmpeg":
            os.kill(encoder, signal.SIGKILL)
