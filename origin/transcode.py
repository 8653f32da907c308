"""An uploaded source into a published package: ffprobe validation, then one ffmpeg run.

`probe_source` decides whether a source is worth encoding before any encoder starts, and says
why not in words an uploader understands (`RejectedSource`): anything ffprobe cannot read, or a
file without a picture, too short, too long, too small, too large, at an absurd frame rate, or
damaged. Only local files of the common containers are opened: a "video" that is really an HLS
playlist or a concat script would make ffmpeg read other files or URLs.

`transcode` encodes the whole ladder (`origin.ladder.plan_ladder`) and the poster in one ffmpeg
run and publishes the lowest rung first: a master playlist listing only that rung exists as soon
as it is complete, so the video can play before the higher rungs are in the store. The full
master comes last. The master is removed when a run starts, so a package made again under the
same id is never half old and half new for a player; what the previous run left and this one
did not rewrite is removed once this one has succeeded.
"""

import contextlib
import json
import os
import selectors
import subprocess
import tempfile
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from manifests import Variant, render_master
from origin.ladder import (
    FFMPEG_LOG,
    MASTER_PLAYLIST,
    MEDIA_PLAYLIST,
    PackagingError,
    Poster,
    Rung,
    check_exit,
    die_with_parent,
    ladder_command,
    master_playlist,
    measure_rung,
    new_tag,
    output_frame_rate,
    plan_ladder,
    publish_rung,
    read_media_playlist,
    reaped,
    spawn_ffmpeg,
)
from origin.store.base import ContentStore

POSTER = "poster.jpg"
WORK_PREFIX = "shoal-transcode-"
# Demuxer names: "mov" reads mp4 and mov, "matroska" reads webm too.
CONTAINERS = "mov,matroska,avi,mpegts,flv"
MIN_SIDE = 64
MAX_SIDE = 4096
MIN_FRAME_RATE = Fraction(1)
MAX_FRAME_RATE = Fraction(240)
NOT_A_VIDEO = "not a video file"
CORRUPT = "the video data is damaged or incomplete"
_POLL_SECONDS = 0.25
_DETAIL_LINES = 10


class RejectedSource(Exception):
    """A source that will not be encoded; `str(exc)` is the short reason for the uploader,
    `detail` what an operator may want to see (ffprobe's complaint, the measured value)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SourceInfo:
    """What the ladder needs to know about a source. `width` and `height` are the displayed
    size (rotation and pixel aspect ratio applied); `video_stream` is the index of the stream
    to encode."""

    width: int
    height: int
    duration: float
    frame_rate: Fraction
    has_audio: bool
    video_codec: str
    video_stream: int


@dataclass(frozen=True)
class PublishedRung:
    """One rung in the store, as the master playlist states it (bit rates measured)."""

    name: str
    width: int
    height: int
    bandwidth: int
    average_bandwidth: int
    codecs: str
    segment_count: int


@dataclass(frozen=True)
class PackageResult:
    """A published package: its rungs lowest first, its playing time, its master and poster."""

    package_id: str
    rungs: tuple[PublishedRung, ...]
    duration: float
    master_key: str
    poster_key: str


def _input_args(path: Path) -> list[str]:
    # The "file:" prefix: a name with a colon is never taken for a protocol.
    return [
        "-protocol_whitelist", "file", "-format_whitelist", CONTAINERS, "-i", f"file:{path}",
    ]  # fmt: skip


def probe_source(path: Path, *, max_duration: float = 600.0, timeout: float = 30.0) -> SourceInfo:
    """What `path` holds, or `RejectedSource` saying why it will not be encoded.

    ffprobe reads every packet of the file (a truncated file shows as a partial read) and
    decodes the audio and the video's keyframes (garbled data shows as decoding errors), not
    every video frame: that would take minutes for a long HD source.
    """
    command = [
        "ffprobe", "-v", "error", "-count_packets", "-count_frames", "-skip_frame", "nokey",
        "-show_format", "-show_streams", "-of", "json", *_input_args(path),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
    except subprocess.TimeoutExpired as exc:
        raise RejectedSource("the video could not be read in time", f"{timeout:g} s") from exc
    errors = done.stderr.decode(errors="replace").strip()
    detail = "\n".join(errors.splitlines()[-_DETAIL_LINES:])
    try:
        report = json.loads(done.stdout) if done.returncode == 0 else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        raise RejectedSource(NOT_A_VIDEO, detail)
    streams: list[dict[str, Any]] = report.get("streams", [])
    videos = [
        stream
        for stream in streams
        if stream.get("codec_type") == "video"
        # Cover art of a music file is a one-picture "video" stream.
        and not stream.get("disposition", {}).get("attached_pic")
    ]
    if not videos:
        raise RejectedSource("no video stream")
    video = videos[0]
    duration = _number(report.get("format", {}).get("duration")) or _number(video.get("duration"))
    if duration is None or duration <= 0:
        raise RejectedSource("the video has no duration")
    if duration > max_duration:
        raise RejectedSource(f"the video is longer than {max_duration:g} s", f"{duration:g} s")
    width, height = _display_size(video)
    if min(width, height) < MIN_SIDE:
        raise RejectedSource(f"the video is smaller than {MIN_SIDE} px", f"{width}x{height}")
    if max(width, height) > MAX_SIDE:
        raise RejectedSource(f"the video is larger than {MAX_SIDE} px", f"{width}x{height}")
    rate = _ratio(video.get("avg_frame_rate")) or _ratio(video.get("r_frame_rate"))
    if rate is None or not MIN_FRAME_RATE <= rate <= MAX_FRAME_RATE:
        raise RejectedSource("unsupported frame rate", f"{rate} fps")
    if errors or not int(video.get("nb_read_frames", 0)):
        raise RejectedSource(CORRUPT, detail or "no picture could be decoded")
    return SourceInfo(
        width=width,
        height=height,
        duration=duration,
        frame_rate=rate,
        has_audio=any(stream.get("codec_type") == "audio" for stream in streams),
        video_codec=str(video.get("codec_name", "")),
        video_stream=int(video["index"]),
    )


def _number(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


def _ratio(value: object) -> Fraction | None:
    """A positive ratio ffprobe writes as "30000/1001" or "4:3"; None for "0/0", "N/A", ..."""
    numerator, _, denominator = str(value).replace(":", "/").partition("/")
    try:
        ratio = Fraction(int(numerator), int(denominator or 1))
    except (ValueError, ZeroDivisionError):
        return None
    return ratio if ratio > 0 else None


def _display_size(video: Mapping[str, Any]) -> tuple[int, int]:
    width, height = int(video.get("width", 0)), int(video.get("height", 0))
    # Non-square pixels: players stretch the width (ffmpeg's convention).
    width = round(width * (_ratio(video.get("sample_aspect_ratio")) or 1))
    if _rotation(video) % 180 == 90:
        width, height = height, width
    return width, height


def _rotation(video: Mapping[str, Any]) -> int:
    for side_data in video.get("side_data_list", []):
        if "rotation" in side_data:
            return round(float(side_data["rotation"]))
    # Older ffprobe versions report the display matrix as a tag.
    return round(_number(video.get("tags", {}).get("rotate", 0)) or 0)


class _Package:
    """What one run has published so far: the rungs, the keys written, the master."""

    def __init__(
        self, store: ContentStore, package_id: str, frame_rate: Fraction, has_audio: bool
    ) -> None:
        self.store = store
        self.package_id = package_id
        self.prefix = f"videos/{package_id}"
        self.master_key = f"{self.prefix}/{MASTER_PLAYLIST}"
        self.poster_key = f"{self.prefix}/{POSTER}"
        self.frame_rate = frame_rate
        self.has_audio = has_audio
        self.rungs: list[PublishedRung] = []
        self.variants: list[Variant] = []
        self.written: set[str] = set()
        self.duration = 0.0

    def add_rung(self, out_dir: Path, rung: Rung) -> None:
        variant = measure_rung(out_dir, rung, self.frame_rate, has_audio=self.has_audio)
        media = read_media_playlist(out_dir, rung.name)
        self.written.update(publish_rung(self.store, self.prefix, out_dir, rung.name))
        self.variants.append(variant)
        self.rungs.append(
            PublishedRung(
                name=rung.name,
                width=rung.width,
                height=rung.height,
                bandwidth=variant.bandwidth,
                average_bandwidth=variant.average_bandwidth or variant.bandwidth,
                codecs=variant.codecs or "",
                segment_count=len(media.segments),
            )
        )
        if len(self.rungs) == 1:
            self.duration = media.total_duration

    def add_poster(self, path: Path) -> None:
        if not path.exists():
            raise PackagingError("ffmpeg wrote no poster")
        self.store.put_file(self.poster_key, path)
        self.written.add(self.poster_key)

    def put_master(self) -> None:
        master = render_master(master_playlist(self.variants))
        self.store.put_bytes(self.master_key, master.encode())
        self.written.add(self.master_key)

    def remove_stale(self) -> None:
        """Delete what an earlier run of this package left and this one did not rewrite."""
        for key in [key for key in self.store.list(f"{self.prefix}/") if key not in self.written]:
            self.store.delete(key)

    def result(self) -> PackageResult:
        return PackageResult(
            package_id=self.package_id,
            rungs=tuple(self.rungs),
            duration=self.duration,
            master_key=self.master_key,
            poster_key=self.poster_key,
        )


def transcode(
    source: Path,
    store: ContentStore,
    package_id: str,
    *,
    on_lowest_ready: Callable[[PackageResult], None] | None = None,
    progress: Callable[[float], None] | None = None,
    info: SourceInfo | None = None,
    work_dir: Path | None = None,
    timeout: float | None = None,
) -> PackageResult:
    """Encode `source` into the package `videos/<package_id>/` and publish it.

    The lowest rung, the poster and a master listing only that rung are published as soon as
    the rung is complete, and `on_lowest_ready` is told; then the other rungs, then the full
    master. `progress` gets the fraction of the source encoded (1.0 at the end of the encode).
    An exception from either callback stops ffmpeg and propagates. `PackagingError` when
    ffmpeg fails or runs past `timeout` seconds: nothing is playable unless the lowest rung was
    published, whose master stays.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    info = probe_source(source) if info is None else info
    rungs = plan_ladder(info.width, info.height)
    rate = output_frame_rate(info.frame_rate, rungs)
    package = _Package(store, package_id, rate, info.has_audio)
    # Until this run's lowest rung is in, a player must not find playlists it is replacing.
    store.delete(package.master_key)
    lowest, higher = rungs[0], rungs[1:]
    with tempfile.TemporaryDirectory(prefix=WORK_PREFIX, dir=work_dir) as work:
        out_dir = Path(work)
        for rung in rungs:
            (out_dir / rung.name).mkdir()
        poster = Poster(out_dir / POSTER, min(1.0, info.duration / 2))
        command = ladder_command(
            _input_args(source),
            rungs,
            out_dir,
            audio_input=0 if info.has_audio else None,
            tag=new_tag(),
            video_stream=info.video_stream,
            frame_rate=rate,
            poster=poster,
        )
        command += ["-progress", "pipe:1"]
        log = out_dir / FFMPEG_LOG

        def publish_lowest() -> None:
            package.add_rung(out_dir, lowest)
            package.add_poster(poster.path)
            package.put_master()
            if on_lowest_ready is not None:
                on_lowest_ready(package.result())

        with (
            reaped(spawn_ffmpeg(command, log, pipe_stdout=True)) as process,
            contextlib.closing(_progress_reports(process, info.duration, deadline)) as reports,
        ):
            for fraction in reports:
                if not package.rungs and _complete(out_dir, lowest, poster):
                    publish_lowest()
                if fraction is not None and progress is not None:
                    progress(fraction)
            check_exit(_wait(process, deadline), log)
        if not package.rungs:
            publish_lowest()
        for rung in higher:
            package.add_rung(out_dir, rung)
        if higher:
            package.put_master()
    package.remove_stale()
    return package.result()


def _complete(out_dir: Path, rung: Rung, poster: Poster) -> bool:
    """Whether ffmpeg has finished `rung` (its playlist ended) and the poster."""
    if not (out_dir / rung.name / MEDIA_PLAYLIST).exists() or not poster.path.exists():
        return False
    return read_media_playlist(out_dir, rung.name).endlist


def _progress_reports(
    process: subprocess.Popen[bytes], duration: float, deadline: float | None
) -> Generator[float | None, None, None]:
    """The fraction of the source encoded at each of ffmpeg's `-progress` reports (1.0 at the
    end), and None whenever a poll interval passes without one, until ffmpeg closes stdout."""
    assert process.stdout is not None
    stdout = process.stdout.fileno()
    pending = b""
    encoded = 0.0
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while True:
            _check_deadline(deadline)
            if not selector.select(_POLL_SECONDS):
                yield None
                continue
            chunk = os.read(stdout, 65536)
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                key, _, value = line.decode(errors="replace").strip().partition("=")
                if key == "out_time_us" and value.isdigit():
                    encoded = int(value) / 1e6
                elif key == "progress":
                    yield 1.0 if value == "end" else min(1.0, encoded / duration)


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise PackagingError("ffmpeg ran past its time limit")


def _wait(process: subprocess.Popen[bytes], deadline: float | None) -> int:
    try:
        return process.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired as exc:
        raise PackagingError("ffmpeg ran past its time limit") from exc
