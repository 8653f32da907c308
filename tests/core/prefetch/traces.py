"""The Pensieve network traces from the shared data folder (core may not read files)."""

import random
from pathlib import Path

import pytest

from core.prefetch import Trace

TRACES = Path(__file__).resolve().parents[3].parent / "shared/data/network-traces/pensieve-train"


def read_trace(path: Path) -> Trace:
    """`time_s<TAB>Mbps` lines."""
    rows = (line.split() for line in path.read_text().splitlines() if line.strip())
    return [(float(t), float(mbps)) for t, mbps in rows]


def sample_traces(count: int, seed: int) -> list[Trace]:
    """`count` traces picked with a seeded generator; the test is skipped without the folder."""
    if not TRACES.is_dir():
        pytest.skip(f"network traces not found at {TRACES}")
    names = sorted(path.name for path in TRACES.iterdir())
    return [read_trace(TRACES / name) for name in random.Random(seed).sample(names, count)]
