"""Shoal's eviction policies against libCacheSim's on one seeded workload.

For every policy and cache size: object and byte hit ratios of Shoal's pure-Python policy (through
`CacheIndex`) and of libCacheSim's C implementation, how many requests got the same hit/miss
outcome from both, and the replay throughput of each (medians over `--runs`). libCacheSim replays
a binary oracleGeneral trace with its C reader, its native speed; Shoal replays through Python.

Requires `pip install libcachesim` in the venv (0.3.5 works); not a project dependency. Traps
(see /work/shared/reference/cdn.md): objects are keyed by numeric id (sizes are fixed per object
here, so (id, size) pairs are unique), and capacity is strict on bytes. libCacheSim's WTinyLFU
refuses objects larger than its 1% window and its S3FIFO objects larger than its 10% small queue;
Shoal's policies leave admission to the index, so at small caches those two differ by design.

    .venv/bin/python bench/policies.py [--requests N] [--objects N] [--runs N]
"""

import argparse
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script from anywhere: the workload generator lives with the golden tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.core.cache.workload import GOLDEN_SEED, Workload, simulate, zipf_workload

try:
    import libcachesim  # type: ignore[import-untyped]  # no stubs, no py.typed
except ImportError:
    libcachesim = None

PERCENTS = (1, 10)
"""Cache sizes, in percent of the working set's bytes."""
ORACLE_GENERAL_RECORD = struct.Struct("<IQIq")
"""libCacheSim's oracleGeneral record: time, object id, size, next request's index (-1: none)."""
HASHPOWER = 20
"""libCacheSim's hash table: 2**20 buckets are plenty here (its default 2**24 costs 128 MB)."""


def libcachesim_caches() -> dict[str, Callable[[int], Any]]:
    """Shoal's policy name -> libCacheSim's cache of that algorithm, configured alike."""
    assert libcachesim is not None
    return {
        "lru": lambda capacity: libcachesim.LRU(capacity, hashpower=HASHPOWER),
        "sieve": lambda capacity: libcachesim.Sieve(capacity, hashpower=HASHPOWER),
        # Shoal promotes from S after one hit, as in the paper; libCacheSim's default is two.
        "s3fifo": lambda capacity: libcachesim.S3FIFO(
            capacity, hashpower=HASHPOWER, move_to_main_threshold=1
        ),
        "wtinylfu": lambda capacity: libcachesim.WTinyLFU(capacity, hashpower=HASHPOWER),
        "gdsf": lambda capacity: libcachesim.GDSF(capacity, hashpower=HASHPOWER),
    }


def object_id(key: str) -> int:
    return int(key.removeprefix("obj"))


def write_oracle_trace(workload: Workload, path: Path) -> None:
    next_request = [-1] * len(workload.keys)
    seen_at: dict[str, int] = {}
    for position in range(len(workload.keys) - 1, -1, -1):
        key = workload.keys[position]
        next_request[position] = seen_at.get(key, -1)
        seen_at[key] = position
    with path.open("wb") as trace:
        for position, key in enumerate(workload.keys):
            trace.write(
                ORACLE_GENERAL_RECORD.pack(
                    position, object_id(key), workload.sizes[key], next_request[position]
                )
            )


def libcachesim_hit_flags(workload: Workload, cache: Any) -> bytearray:
    """libCacheSim's hit/miss per request, through its Python API (request by request)."""
    assert libcachesim is not None
    request = libcachesim.Request()
    flags = bytearray(len(workload.keys))
    for position, key in enumerate(workload.keys):
        request.obj_id = object_id(key)
        request.obj_size = workload.sizes[key]
        request.clock_time = position
        flags[position] = cache.get(request)
    return flags


def median_seconds(runs: int, replay: Callable[[], object]) -> float:
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        replay()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def byte_hit_ratio(workload: Workload, flags: bytearray) -> float:
    sizes = [workload.sizes[key] for key in workload.keys]
    hit_bytes = sum(size for size, hit in zip(sizes, flags, strict=True) if hit)
    return hit_bytes / sum(sizes)


@dataclass(frozen=True)
class Comparison:
    name: str
    percent: int
    object_hit_ratio: float
    their_object_hit_ratio: float
    byte_hit_ratio: float
    their_byte_hit_ratio: float
    agreement: float
    """Share of requests with the same outcome (hit or miss) in both."""
    requests_per_second: float
    their_requests_per_second: float


def compare(
    workload: Workload,
    trace_path: Path,
    name: str,
    make_cache: Callable[[int], Any],
    percent: int,
    runs: int,
) -> Comparison:
    assert libcachesim is not None
    requests = len(workload.keys)
    capacity = workload.working_set_bytes * percent // 100
    ours = simulate(workload, name, capacity).hit_flags
    theirs = libcachesim_hit_flags(workload, make_cache(capacity))

    def replay_theirs() -> object:
        assert libcachesim is not None
        reader = libcachesim.TraceReader(
            str(trace_path), libcachesim.TraceType.ORACLE_GENERAL_TRACE
        )
        return make_cache(capacity).process_trace(reader)

    return Comparison(
        name=name,
        percent=percent,
        object_hit_ratio=ours.count(1) / requests,
        their_object_hit_ratio=theirs.count(1) / requests,
        byte_hit_ratio=byte_hit_ratio(workload, ours),
        their_byte_hit_ratio=byte_hit_ratio(workload, theirs),
        agreement=sum(a == b for a, b in zip(ours, theirs, strict=True)) / requests,
        requests_per_second=requests
        / median_seconds(runs, lambda: simulate(workload, name, capacity)),
        their_requests_per_second=requests / median_seconds(runs, replay_theirs),
    )


HEADER = (
    f"{'policy':9} {'cache':>5}  {'OHR':>6} {'lcs OHR':>7} {'ratio':>6}  {'BHR':>6} "
    f"{'lcs BHR':>7}  {'agree':>7}  {'kreq/s':>7} {'lcs kreq/s':>10} {'ratio':>6}"
)


def table_row(row: Comparison) -> str:
    return (
        f"{row.name:9} {row.percent:>4}%  {row.object_hit_ratio:6.4f} "
        f"{row.their_object_hit_ratio:7.4f} "
        f"{row.object_hit_ratio / row.their_object_hit_ratio:5.3f}x  {row.byte_hit_ratio:6.4f} "
        f"{row.their_byte_hit_ratio:7.4f}  {row.agreement:7.2%}  "
        f"{row.requests_per_second / 1e3:7.0f} {row.their_requests_per_second / 1e3:10.0f} "
        f"{row.requests_per_second / row.their_requests_per_second:5.2f}x"
    )


def summary_lines(row: Comparison) -> list[str]:
    return [
        f"bench policies: {row.name}_ohr_{row.percent}pct={row.object_hit_ratio:.4f} "
        f"ratio={row.object_hit_ratio / row.their_object_hit_ratio:.2f}x vs libCacheSim",
        f"bench policies: {row.name}_req_per_s_{row.percent}pct={row.requests_per_second:.0f} "
        f"ratio={row.requests_per_second / row.their_requests_per_second:.2f}x vs libCacheSim",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per cell (median)")
    parser.add_argument("--seed", type=int, default=GOLDEN_SEED)
    args = parser.parse_args()
    if libcachesim is None:
        print(
            "bench policies: libcachesim is not installed; run "
            "`.venv/bin/pip install libcachesim` (PyPI, 0.3.5 works)",
            file=sys.stderr,
        )
        return 2

    workload = zipf_workload(seed=args.seed, objects=args.objects, requests=args.requests)
    print(
        f"workload: Zipf 0.9, {len(workload.keys):,} requests over "
        f"{len(set(workload.keys)):,} objects, {workload.working_set_bytes / 1e9:.2f} GB "
        f"working set; {args.runs} timed runs per cell"
    )
    print(HEADER)
    print("-" * len(HEADER))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        trace_path = Path(scratch) / "workload.oracleGeneral"
        write_oracle_trace(workload, trace_path)
        for name, make_cache in libcachesim_caches().items():
            for percent in PERCENTS:
                row = compare(workload, trace_path, name, make_cache, percent, args.runs)
                print(table_row(row), flush=True)
                rows.append(row)
    print()
    for row in rows:
        print("\n".join(summary_lines(row)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
