"""The sample library: a few short vertical videos so a fresh stack has something to play.

They are synthesised by ffmpeg from its lavfi test sources (no downloads, no files in the
repository), generated once, and published like any other video. A sample exists when its master
playlist does, so an interrupted generation is simply redone on the next start.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from origin.ladder import MASTER_PLAYLIST, SAMPLE_LADDER, package_video
from origin.store.base import ContentStore

SAMPLE_SECONDS = 6
SAMPLE_SIZE = "720x1280"  # 9:16, the top rung of the sample ladder


@dataclass(frozen=True)
class SampleSource:
    video_id: str
    lavfi_video: str
    """A lavfi source graph; size and rate are appended from the constants."""
    tone_hz: int


# Cheap sources first: each encodes its ladder in a few seconds.
SAMPLE_SOURCES = (
    SampleSource("sample-testsrc", "testsrc2", 440),
    SampleSource("sample-bars", "smptehdbars", 523),
    SampleSource("sample-cells", "cellauto=rule=110", 659),
    SampleSource("sample-classic", "testsrc", 784),
    SampleSource("sample-yuv", "yuvtestsrc", 880),
)


def _input_args(source: SampleSource, frame_rate: int) -> list[str]:
    separator = ":" if "=" in source.lavfi_video else "="
    video = f"{source.lavfi_video}{separator}size={SAMPLE_SIZE}:rate={frame_rate}"
    audio = f"sine=frequency={source.tone_hz}:sample_rate=48000"
    seconds = str(SAMPLE_SECONDS)
    return ["-t", seconds, "-f", "lavfi", "-i", video, "-t", seconds, "-f", "lavfi", "-i", audio]


def ensure_samples(
    store: ContentStore, count: int, *, progress: Callable[[str], None]
) -> list[str]:
    """Make sure the first `count` samples are published; return their video ids."""
    if count > len(SAMPLE_SOURCES):
        raise ValueError(f"only {len(SAMPLE_SOURCES)} sample videos are defined, not {count}")
    wanted = SAMPLE_SOURCES[:count]
    missing = [s for s in wanted if not store.exists(f"videos/{s.video_id}/{MASTER_PLAYLIST}")]
    for number, source in enumerate(missing, start=1):
        started = time.monotonic()
        progress(f"generating sample video {number}/{len(missing)}: {source.video_id} ...")
        package_video(
            store,
            source.video_id,
            _input_args(source, frame_rate=30),
            SAMPLE_LADDER,
            audio_input=1,
            frame_rate=30,
        )
        progress(f"  {source.video_id} ready in {time.monotonic() - started:.1f}s")
    return [s.video_id for s in wanted]
