"""From a source to a published HLS package: one ffmpeg run, a measured master, an atomic publish.

The ladder is encoded in a single ffmpeg process (one decode, a split filter, one x264 encode
per rung) into fMP4 segments whose boundaries line up across renditions: keyframes are forced
every `segment_seconds` and scene-cut keyframes are off, so a player can switch rungs at any
segment. ffmpeg's own master playlist would state the bitrates it was asked for; ours states the
bitrates it measured (RFC 8216 section 4.3.4.2: BANDWIDTH is the peak segment bit rate).

Segment and init names carry a random tag per run: caches keep segments as immutable, so a
package made again under the same id must not reuse a name for different bytes. Each rung gets
an `integrity.json` (SHA-256 of its init and segments) so a peer or an edge can check what it
was given; it is published before the rung's playlist, which is published before any master
that lists the rung.

This module also runs ffmpeg for the rest of the origin (`spawn_ffmpeg`): stderr goes to a log
file (its tail explains a failure) and the process dies with its parent, so a killed worker
leaves no encoder behind.
"""

import contextlib
import ctypes
import hashlib
import json
import math
import secrets
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from manifests import (
    MasterPlaylist,
    MediaPlaylist,
    Variant,
    parse_media,
    render_master,
    validate_master,
)
from origin.store.base import ContentStore

MASTER_PLAYLIST = "master.m3u8"
MEDIA_PLAYLIST = "index.m3u8"
INTEGRITY_LIST = "integrity.json"
FFMPEG_LOG = "ffmpeg.log"
SEGMENT_SECONDS = 2
_LOG_TAIL_LINES = 10
_PR_SET_PDEATHSIG = 1
# Loaded once in the parent: a child between fork and exec must not call the dynamic loader.
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Rung:
    """One rendition of the ladder, named by its short side (portrait video: the width)."""

    name: str
    width: int
    height: int
    video_kbps: int
    audio_kbps: int = 96


# Vertical 9:16 ladder for the sample library.
SAMPLE_LADDER = (
    Rung("360p", 360, 640, 600),
    Rung("540p", 540, 960, 1200),
    Rung("720p", 720, 1280, 2200),
)

# The uploads ladder: video bit rate by short side. The rates suit 9:16 (and 16:9) at 30 fps.
_LADDER_KBPS = {360: 680, 720: 2370, 1080: 4910}
_MIN_VIDEO_KBPS = 100
# Rates a player or a TV expects; a source within 2% of one of them is taken to be it.
_STANDARD_RATES = tuple(
    Fraction(rate)
    for rate in (
        10, 12, 15, 20, Fraction(24000, 1001), 24, 25, Fraction(30000, 1001), 30, 48, 50,
        Fraction(60000, 1001), 60,
    )
)  # fmt: skip
_SNAP_TOLERANCE = Fraction(2, 100)


class PackagingError(RuntimeError):
    """ffmpeg failed or produced a package that does not validate."""


@dataclass(frozen=True)
class Poster:
    """A still taken in the ladder run: the frame at `at` seconds, at the lowest rung's size."""

    path: Path
    at: float


PUBLISH_THREADS = 8
"""Files of a rung copied into the store at once."""


def plan_ladder(width: int, height: int) -> tuple[Rung, ...]:
    """The rungs for a source displayed at `width` x `height`, lowest first.

    360p, 720p and 1080p as far as the source's short side reaches (never upscaling: a source
    below 360 gets one rung at its own size), the aspect ratio kept, every side even (x264's
    4:2:0 needs it).
    """
    if width < 2 or height < 2:
        raise ValueError(f"a video of {width}x{height} has no even size to encode at")
    short, long = min(width, height), max(width, height)
    sides = [side for side in _LADDER_KBPS if side <= short] or [_even_at_most(short)]
    rungs = []
    for side in sides:
        other = min(_even_at_most(long), 2 * max(1, round(long * side / short / 2)))
        rung_width, rung_height = (side, other) if width <= height else (other, side)
        rungs.append(Rung(f"{side}p", rung_width, rung_height, _video_kbps(side, side * other)))
    return tuple(rungs)


def _video_kbps(side: int, pixels: int) -> int:
    if side in _LADDER_KBPS:
        return _LADDER_KBPS[side]
    # Below 360p: the bits per pixel of 360p.
    return max(_MIN_VIDEO_KBPS, round(_LADDER_KBPS[360] * pixels / (360 * 640)))


def _even_at_most(size: int) -> int:
    return size - size % 2


def output_frame_rate(source_rate: Fraction, rungs: Sequence[Rung]) -> Fraction:
    """The frame rate to encode `rungs` at: the source's divided by the smallest integer that
    brings it to 30 fps at most (60 when the ladder reaches 720p), snapped to a standard rate.

    Dividing by an integer drops whole frames at a steady cadence (no judder); high rates are
    only worth their bits at sizes where motion detail shows.
    """
    if source_rate <= 0:
        raise ValueError(f"frame rate must be positive, got {source_rate}")
    ceiling = 60 if any(min(rung.width, rung.height) >= 720 for rung in rungs) else 30
    divisor = 1
    while (rate := _snap(source_rate / divisor)) > ceiling:
        divisor += 1
    return rate


def _snap(rate: Fraction) -> Fraction:
    nearest = min(_STANDARD_RATES, key=lambda standard: abs(standard - rate))
    return nearest if abs(nearest - rate) <= nearest * _SNAP_TOLERANCE else rate


def new_tag() -> str:
    """A random tag for one run's segment and init names."""
    return secrets.token_hex(4)


def ladder_command(
    input_args: Sequence[str],
    rungs: Sequence[Rung],
    out_dir: Path,
    *,
    audio_input: int | None,
    tag: str,
    video_stream: int | None = None,
    segment_seconds: int = SEGMENT_SECONDS,
    frame_rate: Fraction = Fraction(30),
    poster: Poster | None = None,
) -> list[str]:
    """The ffmpeg command encoding `rungs` from the inputs into `out_dir/<rung>/`.

    Video comes from input 0 (stream `video_stream`, else its first video stream); audio from
    input `audio_input` (None: the package has no audio). With `poster`, the same run also
    writes the poster image.
    """
    has_audio = audio_input is not None
    video = f"0:{video_stream}" if video_stream is not None else "0:v:0"
    branches = [f"[s{i}]" for i in range(len(rungs))] + (["[p]"] if poster else [])
    graph = [f"[{video}]fps={frame_rate},split={len(branches)}{''.join(branches)}"]
    # setsar=1: the rungs are scaled to their display size, so their pixels are square.
    graph += [
        f"[s{i}]scale={rung.width}:{rung.height}:flags=bicubic,setsar=1[v{i}]"
        for i, rung in enumerate(rungs)
    ]
    if poster:
        lowest = rungs[0]
        graph.append(
            f"[p]trim=start={poster.at:.3f},scale={lowest.width}:{lowest.height},setsar=1[poster]"
        )
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *input_args]
    command += ["-filter_complex", ";".join(graph)]
    for i in range(len(rungs)):
        command += ["-map", f"[v{i}]"]
    if has_audio:
        for _ in rungs:
            command += ["-map", f"{audio_input}:a:0"]
    keyframe_interval = str(math.ceil(frame_rate * segment_seconds))
    command += [
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p",
        # Aligned segments: a keyframe exactly every segment, never one from a scene cut.
        "-g", keyframe_interval, "-keyint_min", keyframe_interval, "-sc_threshold", "0",
        "-force_key_frames", f"expr:gte(t,n_forced*{segment_seconds})",
    ]  # fmt: skip
    for i, rung in enumerate(rungs):
        command += [
            f"-b:v:{i}", f"{rung.video_kbps}k",
            f"-maxrate:v:{i}", f"{rung.video_kbps * 11 // 10}k",
            f"-bufsize:v:{i}", f"{rung.video_kbps * 2}k",
        ]  # fmt: skip
    if has_audio:
        command += ["-c:a", "aac", "-ac", "2", "-ar", "48000"]
        for i, rung in enumerate(rungs):
            command += [f"-b:a:{i}", f"{rung.audio_kbps}k"]
    stream_map = " ".join(
        f"v:{i},a:{i},name:{rung.name}" if has_audio else f"v:{i},name:{rung.name}"
        for i, rung in enumerate(rungs)
    )
    # ffmpeg insists on %v in the init name with several variants, and leaves it verbatim with
    # one: name the single rung's init as %v would have.
    init_name = f"init_{tag}_%v.mp4" if len(rungs) > 1 else f"init_{tag}_{rungs[0].name}.mp4"
    command += [
        "-f", "hls", "-hls_time", str(segment_seconds), "-hls_playlist_type", "vod",
        "-hls_segment_type", "fmp4",
        # temp_file: a playlist is renamed into place whole, so it can be read while ffmpeg runs.
        "-hls_flags", "independent_segments+temp_file",
        "-hls_fmp4_init_filename", init_name,
        "-hls_segment_filename", str(out_dir / "%v" / f"seg_{tag}_%05d.m4s"),
        "-var_stream_map", stream_map,
        str(out_dir / "%v" / MEDIA_PLAYLIST),
    ]  # fmt: skip
    if poster:
        command += [
            "-map", "[poster]", "-frames:v", "1", "-q:v", "3",
            "-update", "1", "-atomic_writing", "1", str(poster.path),
        ]  # fmt: skip
    return command


def die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (a `preexec_fn`: no orphaned ffmpeg)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn_ffmpeg(
    command: Sequence[str], log: Path, *, pipe_stdout: bool = False
) -> subprocess.Popen[bytes]:
    """Start `command` with stderr into `log` (and stdout piped, or discarded); it dies with us."""
    with log.open("wb") as stderr:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else subprocess.DEVNULL,
            stderr=stderr,
            # Safe with threads around: it only calls prctl, through a libc loaded beforehand.
            preexec_fn=die_with_parent,
        )


@contextlib.contextmanager
def reaped(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """`process`, killed and waited for if it still runs when the block ends (by an error)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def check_exit(returncode: int, log: Path) -> None:
    """Raise `PackagingError` with the tail of ffmpeg's log unless it exited with 0."""
    if returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines()
        tail = "\n".join(lines[-_LOG_TAIL_LINES:])
        raise PackagingError(f"ffmpeg exited with status {returncode}:\n{tail}")


def read_media_playlist(out_dir: Path, rung_name: str) -> MediaPlaylist:
    return parse_media((out_dir / rung_name / MEDIA_PLAYLIST).read_text())


def init_codecs(init: bytes, *, has_audio: bool) -> str:
    """The CODECS attribute of a rung, from its init segment (as ffmpeg itself derives it).

    The avcC box holds the profile, constraint flags and level of the H.264 stream; the audio is
    always AAC-LC, which is what the ladder encodes.
    """
    at = init.find(b"avcC")
    if at < 0 or len(init) < at + 8:
        raise PackagingError("the init segment has no H.264 configuration (avcC)")
    profile, constraints, level = init[at + 5 : at + 8]
    video = f"avc1.{profile:02x}{constraints:02x}{level:02x}"
    return f"{video},mp4a.40.2" if has_audio else video


def measure_rung(out_dir: Path, rung: Rung, frame_rate: Fraction, *, has_audio: bool) -> Variant:
    """The master playlist entry of a rung ffmpeg wrote, with bit rates measured from its files."""
    media = read_media_playlist(out_dir, rung.name)
    if media.init is None or not media.segments:
        raise PackagingError(f"rung {rung.name}: no init section or no segments")
    sizes = [(out_dir / rung.name / s.uri).stat().st_size * 8 for s in media.segments]
    rates = [bits / s.duration for bits, s in zip(sizes, media.segments, strict=True)]
    init = (out_dir / rung.name / media.init.uri).read_bytes()
    return Variant(
        uri=f"{rung.name}/{MEDIA_PLAYLIST}",
        bandwidth=round(max(rates)),
        average_bandwidth=round(sum(sizes) / media.total_duration),
        resolution=(rung.width, rung.height),
        codecs=init_codecs(init, has_audio=has_audio),
        frame_rate=float(frame_rate),
    )


def master_playlist(variants: Sequence[Variant]) -> MasterPlaylist:
    """The master playlist of `variants`, validated; lowest bandwidth first."""
    # Lowest rung first: players that pick the first variant start fast.
    master = MasterPlaylist(
        variants=tuple(sorted(variants, key=lambda v: v.bandwidth)), independent_segments=True
    )
    problems = validate_master(master)
    if problems:
        raise PackagingError(f"invalid master playlist: {problems}")
    return master


def measured_master(
    out_dir: Path, rungs: Sequence[Rung], frame_rate: Fraction, *, has_audio: bool
) -> MasterPlaylist:
    """The master playlist with bitrates measured from the segments ffmpeg wrote."""
    return master_playlist(
        [measure_rung(out_dir, rung, frame_rate, has_audio=has_audio) for rung in rungs]
    )


def publish_rung(store: ContentStore, prefix: str, out_dir: Path, rung_name: str) -> list[str]:
    """Copy one rung into the store under `prefix/<rung>/`: its init and segments, then its
    integrity list, then its playlist (what lists a file comes after it). The keys written."""
    rung_dir = out_dir / rung_name
    media = read_media_playlist(out_dir, rung_name)
    uris = ([media.init.uri] if media.init else []) + [s.uri for s in media.segments]
    written = [f"{prefix}/{rung_name}/{uri}" for uri in uris]

    def put(uri: str, key: str) -> str:
        digest = hashlib.sha256((rung_dir / uri).read_bytes()).hexdigest()
        store.put_file(key, rung_dir / uri)
        return digest

    # The files are independent: written side by side, each store's durable write (an fsync,
    # an S3 request) overlaps the others' instead of adding up.
    with ThreadPoolExecutor(PUBLISH_THREADS) as pool:
        digests = dict(zip(uris, pool.map(put, uris, written), strict=True))
    integrity = {"version": 1, "algorithm": "sha256", "segments": digests}
    written.append(f"{prefix}/{rung_name}/{INTEGRITY_LIST}")
    store.put_bytes(written[-1], json.dumps(integrity, indent=1).encode())
    written.append(f"{prefix}/{rung_name}/{MEDIA_PLAYLIST}")
    store.put_file(written[-1], rung_dir / MEDIA_PLAYLIST)
    return written


def publish(store: ContentStore, video_id: str, out_dir: Path, master: MasterPlaylist) -> None:
    """Copy the package into the store under `videos/<video_id>/`, the master playlist last.

    A video exists for readers once its master playlist does, so a publish interrupted half way
    leaves nothing playable behind (and `ensure` runs simply publish again).
    """
    prefix = f"videos/{video_id}"
    for variant in master.variants:
        publish_rung(store, prefix, out_dir, variant.uri.split("/")[0])
    store.put_bytes(f"{prefix}/{MASTER_PLAYLIST}", render_master(master).encode())


def package_video(
    store: ContentStore,
    video_id: str,
    input_args: Sequence[str],
    rungs: Sequence[Rung],
    *,
    audio_input: int | None,
    segment_seconds: int = SEGMENT_SECONDS,
    frame_rate: int = 30,
) -> None:
    """Encode, measure, validate and publish one video; a failure publishes nothing."""
    rate = Fraction(frame_rate)
    with tempfile.TemporaryDirectory(prefix=f"shoal-package-{video_id}-") as work:
        out_dir = Path(work)
        command = ladder_command(
            input_args,
            rungs,
            out_dir,
            audio_input=audio_input,
            tag=new_tag(),
            segment_seconds=segment_seconds,
            frame_rate=rate,
        )
        log = out_dir / FFMPEG_LOG
        with reaped(spawn_ffmpeg(command, log)) as process:
            check_exit(process.wait(), log)
        master = measured_master(out_dir, rungs, rate, has_audio=audio_input is not None)
        publish(store, video_id, out_dir, master)
