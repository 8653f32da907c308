"""From a source to a published HLS package: one ffmpeg run, a measured master, an atomic publish.

The ladder is encoded in a single ffmpeg process (one decode, a split filter, one x264 encode
per rung) into fMP4 segments whose boundaries line up across renditions: keyframes are forced
every `segment_seconds` and scene-cut keyframes are off, so a player can switch rungs at any
segment. ffmpeg's own master playlist states the bitrates it was asked for; ours states the
bitrates it measured (RFC 8216 section 4.3.4.2: BANDWIDTH is the peak segment bit rate).
"""

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from manifests import (
    MasterPlaylist,
    Variant,
    parse_master,
    parse_media,
    render_master,
    validate_master,
)
from origin.store.base import ContentStore

MASTER_PLAYLIST = "master.m3u8"
MEDIA_PLAYLIST = "index.m3u8"


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


class PackagingError(RuntimeError):
    """ffmpeg failed or produced a package that does not validate."""


def ladder_command(
    input_args: Sequence[str],
    rungs: Sequence[Rung],
    out_dir: Path,
    *,
    audio_input: int | None,
    segment_seconds: int = 2,
    frame_rate: int = 30,
) -> list[str]:
    """The ffmpeg command encoding `rungs` from the inputs into `out_dir/<rung>/`.

    Video comes from input 0; audio from input `audio_input` (None: the package has no audio).
    """
    has_audio = audio_input is not None
    splits = "".join(f"[s{i}]" for i in range(len(rungs)))
    scales = ";".join(
        f"[s{i}]scale={rung.width}:{rung.height}:flags=bicubic[v{i}]"
        for i, rung in enumerate(rungs)
    )
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *input_args]
    command += ["-filter_complex", f"[0:v]split={len(rungs)}{splits};{scales}"]
    for i in range(len(rungs)):
        command += ["-map", f"[v{i}]"]
    if has_audio:
        for _ in rungs:
            command += ["-map", f"{audio_input}:a:0"]
    command += [
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p",
        "-r", str(frame_rate),
        # Aligned segments: a keyframe exactly every segment, never one from a scene cut.
        "-g", str(frame_rate * segment_seconds), "-keyint_min", str(frame_rate * segment_seconds),
        "-sc_threshold", "0",
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
    command += [
        "-f", "hls", "-hls_time", str(segment_seconds), "-hls_playlist_type", "vod",
        "-hls_segment_type", "fmp4", "-hls_flags", "independent_segments",
        "-hls_segment_filename", str(out_dir / "%v" / "seg_%05d.m4s"),
        "-master_pl_name", MASTER_PLAYLIST,
        "-var_stream_map", stream_map,
        str(out_dir / "%v" / MEDIA_PLAYLIST),
    ]  # fmt: skip
    return command


def run_ffmpeg(command: Sequence[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-10:])
        raise PackagingError(f"ffmpeg exited with status {result.returncode}:\n{tail}")


def measured_master(out_dir: Path, rungs: Sequence[Rung], frame_rate: int) -> MasterPlaylist:
    """The master playlist with bitrates measured from the segments ffmpeg wrote."""
    codecs_by_uri = {
        variant.uri: variant.codecs
        for variant in parse_master((out_dir / MASTER_PLAYLIST).read_text()).variants
    }
    variants = []
    for rung in rungs:
        uri = f"{rung.name}/{MEDIA_PLAYLIST}"
        media = parse_media((out_dir / uri).read_text())
        rates = [
            (out_dir / rung.name / segment.uri).stat().st_size * 8 / segment.duration
            for segment in media.segments
        ]
        total_bits = sum((out_dir / rung.name / s.uri).stat().st_size * 8 for s in media.segments)
        variants.append(
            Variant(
                uri=uri,
                bandwidth=round(max(rates)),
                average_bandwidth=round(total_bits / media.total_duration),
                resolution=(rung.width, rung.height),
                codecs=codecs_by_uri[uri],
                frame_rate=float(frame_rate),
            )
        )
    # Lowest rung first: players that pick the first variant start fast.
    variants.sort(key=lambda v: v.bandwidth)
    master = MasterPlaylist(variants=tuple(variants), independent_segments=True)
    problems = validate_master(master)
    if problems:
        raise PackagingError(f"invalid master playlist: {problems}")
    return master


def publish(store: ContentStore, video_id: str, out_dir: Path, master: MasterPlaylist) -> None:
    """Copy the package into the store under `videos/<video_id>/`, the master playlist last.

    A video exists for readers once its master playlist does, so a publish interrupted half way
    leaves nothing playable behind (and `ensure` runs simply publish again).
    """
    prefix = f"videos/{video_id}"
    for path in sorted(out_dir.rglob("*")):
        if path.is_file() and path.name != MASTER_PLAYLIST:
            store.put_file(f"{prefix}/{path.relative_to(out_dir).as_posix()}", path)
    store.put_bytes(f"{prefix}/{MASTER_PLAYLIST}", render_master(master).encode())


def package_video(
    store: ContentStore,
    video_id: str,
    input_args: Sequence[str],
    rungs: Sequence[Rung],
    *,
    audio_input: int | None,
    segment_seconds: int = 2,
    frame_rate: int = 30,
) -> None:
    """Encode, measure, validate and publish one video; a failure publishes nothing."""
    work = Path(tempfile.mkdtemp(prefix=f"shoal-package-{video_id}-"))
    try:
        run_ffmpeg(
            ladder_command(
                input_args,
                rungs,
                work,
                audio_input=audio_input,
                segment_seconds=segment_seconds,
                frame_rate=frame_rate,
            )
        )
        master = measured_master(work, rungs, frame_rate)
        publish(store, video_id, work, master)
    finally:
        shutil.rmtree(work, ignore_errors=True)
