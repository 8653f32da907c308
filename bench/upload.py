"""Uploads and transcoding: what the pipeline costs on top of the work it cannot avoid.

Two comparisons, each in one run, medians over `--runs`:

1. **Upload throughput over loopback** (`shoal upload`'s client, tus with a SHA-256 per chunk,
   into an origin that fsyncs every chunk and then copies the finished file into the content
   store) against a raw copy of the same file on the same disk, fsynced (`shutil.copyfile`).
2. **Transcode wall time through the pipeline** (hand-off, job queue, worker, ffprobe, ffmpeg,
   publishing every rung, catalog updates: from the end of the upload until the full ladder is
   in the catalog) against the very ffmpeg command the pipeline ran, run alone.

The origins run in this process (their uvloop on the main thread, the client in a thread), on
temporary filesystem stores and catalogs: one without workers takes the throughput uploads, one
with a transcode worker the timed videos.

    .venv/bin/python bench/upload.py [--runs 3] [--size-mb 256] [--seconds 10]
"""

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop
from aiohttp import web

import origin.transcode
from core.config import OriginConfig, UploadsConfig
from deploy.upload import upload_file
from origin.app import make_origin_app
from origin.ladder import plan_ladder
from origin.store.fs import FilesystemStore
from origin.transcode import WORK_PREFIX
from origin.uploads import PIPELINE, VideoPipeline, install_uploads

TOKEN = "bench-token"
CHUNK = 8 * 1024 * 1024


def raw_copy_seconds(source: Path, destination: Path) -> float:
    started = time.perf_counter()
    shutil.copyfile(source, destination)
    with destination.open("rb+") as copy:
        os.fsync(copy.fileno())
    elapsed = time.perf_counter() - started
    destination.unlink()
    return elapsed


def make_clip(path: Path, seconds: int) -> None:
    """A portrait 720x1280 clip with audio: the pipeline makes 360p and 720p from it."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=720x1280:rate=30", "-f", "lavfi",
         "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )  # fmt: skip


class Recorder:
    """Remembers the ffmpeg command lines the pipeline starts (to run them alone afterwards)."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []
        self._module = vars(origin.transcode)
        self._spawn = self._module["spawn_ffmpeg"]

    def __enter__(self) -> "Recorder":
        def spawn(command: Sequence[str], log: Path, *, pipe_stdout: bool = False) -> Any:
            self.commands.append(list(command))
            return self._spawn(command, log, pipe_stdout=pipe_stdout)

        self._module["spawn_ffmpeg"] = spawn
        return self

    def __exit__(self, *exc: object) -> None:
        self._module["spawn_ffmpeg"] = self._spawn


def ffmpeg_alone_seconds(command: list[str], source: Path, rungs: Sequence[str]) -> float:
    """Run a recorded ladder command again, alone: the same arguments, but reading a copy of
    `source` and writing into a directory of its own (made here, and the only one removed)."""
    work_args = [arg for arg in command if WORK_PREFIX in arg]
    if not work_args:
        raise RuntimeError("the recorded command names no transcode directory")
    first = work_args[0]
    recorded_work = first[: first.index("/", first.index(WORK_PREFIX))]
    scratch = Path(tempfile.mkdtemp(prefix="shoal-bench-alone-"))
    try:
        (scratch / "source").write_bytes(source.read_bytes())
        out = scratch / "out"
        for rung in rungs:
            (out / rung).mkdir(parents=True)
        argv = []
        for arg in command:
            if arg.startswith("file:"):
                arg = f"file:{scratch / 'source'}"
            argv.append(arg.replace(recorded_work, str(out)).replace("pipe:1", "-"))
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def serve(root: Path, *, workers: int) -> tuple[web.AppRunner, str, VideoPipeline]:
    root.mkdir()
    store = FilesystemStore(root / "store")
    config = UploadsConfig(
        staging_path=str(root / "uploads"),
        catalog_path=str(root / "catalog.sqlite"),
        tokens=[f"bench:{TOKEN}"],
        work_path=str(root / "work"),
        max_bytes=64 * 1024**3,
        workers=workers,
    )
    (root / "work").mkdir()
    app = make_origin_app(store, OriginConfig())
    install_uploads(app, store, config, root)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", app[PIPELINE]


async def full_ladder_seconds(
    url: str, pipeline: VideoPipeline, clip: Path, rungs: int, state: Path
) -> float:
    """Upload, then time from the upload's end until every rung is in the catalog."""
    result = await asyncio.to_thread(
        upload_file, clip, origin=url, token=TOKEN, caption="bench", wait=False, state_file=state
    )
    uploaded = time.perf_counter()
    upload_id = result.upload_url.rsplit("/", 1)[1]
    while True:
        video = pipeline.catalog.video_of_upload(upload_id)
        if video is not None:
            package = pipeline.catalog.package(video.package_id)
            if package is not None and len(package.renditions) == rungs:
                return time.perf_counter() - uploaded
            if video.status.value == "failed":
                raise RuntimeError(f"transcode failed: {video.reason}")
        await asyncio.sleep(0.02)


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-upload-") as temporary:
        root = Path(temporary)
        big = root / "big.bin"
        with big.open("wb") as file:
            for _ in range(args.size_mb):
                file.write(os.urandom(1024 * 1024))
        clip = root / "clip.mp4"
        make_clip(clip, args.seconds)
        ladder = [rung.name for rung in plan_ladder(720, 1280)]
        # Two origins: the throughput uploads (random bytes, not videos) must not queue jobs
        # in front of the transcodes being timed.
        upload_runner, upload_url, _ = await serve(root / "uploads-only", workers=0)
        runner, url, pipeline = await serve(root / "pipeline", workers=1)
        copies, uploads, pipelines, alones = [], [], [], []
        try:
            for run in range(1, args.runs + 1):
                copies.append(raw_copy_seconds(big, root / "copy.bin"))
                started = time.perf_counter()
                await asyncio.to_thread(
                    upload_file, big, origin=upload_url, token=TOKEN, caption=f"big {run}",
                    chunk_size=CHUNK, wait=False, state_file=root / "state.json",
                )  # fmt: skip
                uploads.append(time.perf_counter() - started)
                # A fresh source each run (else deduplication skips the transcode).
                variant = root / f"clip-{run}.mp4"
                data = clip.read_bytes()
                variant.write_bytes(data[:-16] + os.urandom(16))
                with Recorder() as recorder:
                    pipelines.append(
                        await full_ladder_seconds(
                            url, pipeline, variant, len(ladder), root / "s.json"
                        )
                    )
                alones.append(
                    await asyncio.to_thread(
                        ffmpeg_alone_seconds, recorder.commands[-1], variant, ladder
                    )
                )
                print(
                    f"run {run}: copy {copies[-1]:.2f}s, upload {uploads[-1]:.2f}s, "
                    f"pipeline {pipelines[-1]:.2f}s, ffmpeg alone {alones[-1]:.2f}s",
                    flush=True,
                )
        finally:
            await runner.cleanup()
            await upload_runner.cleanup()
        size = args.size_mb
        copy_rate = size / statistics.median(copies)
        upload_rate = size / statistics.median(uploads)
        pipeline_s, alone_s = statistics.median(pipelines), statistics.median(alones)
        overhead = (pipeline_s - alone_s) / alone_s * 100
        print()
        print(f"raw copy (fsync)        {copy_rate:8.1f} MB/s")
        print(f"tus upload (loopback)   {upload_rate:8.1f} MB/s")
        print(f"ffmpeg alone            {alone_s:8.2f} s  ({args.seconds} s clip, 720x1280)")
        print(f"through the pipeline    {pipeline_s:8.2f} s  (overhead {overhead:+.1f}%)")
        print(
            f"bench upload: upload_mb_per_s={upload_rate:.1f} "
            f"ratio={upload_rate / copy_rate:.2f}x vs raw fsynced copy"
        )
        print(
            f"bench upload: transcode_s={pipeline_s:.2f} "
            f"ratio={pipeline_s / alone_s:.2f}x vs ffmpeg alone"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=256, help="size of the uploaded file")
    parser.add_argument("--seconds", type=int, default=10, help="length of the transcoded clip")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        print("bench upload: ffmpeg is required (apt-get install ffmpeg)", file=sys.stderr)
        sys.exit(2)
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
