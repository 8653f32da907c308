"""One node's metrics across its worker processes, and the per-request latency histogram.

Each worker of a node (see `deploy.workers`) writes its own registry's exposition to
`<dir>/<pid>.prom` every `SNAPSHOT_SECONDS` and just before it answers a scrape; the worker that
answers `/metrics` merges every snapshot in the directory, so a scrape of any worker sees the
whole node. Counters and histograms add up; gauges of what each worker holds (connections,
objects, bytes) add up too; gauges of a worker's own state that do not add (the admission
policy's thresholds) keep one series per worker, labelled `worker`. prometheus-client's
multiprocess mode would need its own metric types throughout; this keeps the collectors as they
are and costs one small file write a second.

The supervisor removes the snapshot of a worker that exited, so its counts leave the sums (to
Prometheus, a counter reset, which `rate()` handles).
"""

import bisect
import contextlib
import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from core.cache.objects import classify

SNAPSHOT_SECONDS = 1.0
SNAPSHOT_SUFFIX = ".prom"
MAX_REMEMBERED_PATHS = 4096
PER_WORKER_GAUGES = ("shoal_admission_",)
"""Gauge name prefixes kept per worker (a worker label) rather than summed."""


def snapshot_path(directory: Path, pid: int) -> Path:
    return directory / f"{pid}{SNAPSHOT_SUFFIX}"


def write_snapshot(directory: Path, exposition: bytes) -> None:
    """Replace this process's snapshot atomically: a reader sees the old or the new one."""
    final = snapshot_path(directory, os.getpid())
    temporary = final.with_name(f".{final.name}.tmp")
    temporary.write_bytes(exposition)
    temporary.replace(final)


def remove_snapshot(directory: Path, pid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        snapshot_path(directory, pid).unlink()


def read_snapshots(directory: Path) -> list[tuple[str, str]]:
    """(worker pid, exposition) of every snapshot in `directory`."""
    snapshots = []
    for path in sorted(directory.glob(f"*{SNAPSHOT_SUFFIX}")):
        with contextlib.suppress(FileNotFoundError):  # its worker exited meanwhile
            snapshots.append((path.stem, path.read_text()))
    return snapshots


def merge_expositions(snapshots: Iterable[tuple[str, str]]) -> str:
    """Prometheus text of the sum of `snapshots`, each (worker, exposition)."""
    kinds: dict[str, tuple[str, str]] = {}
    """Family name -> (type, help), in order of first appearance."""
    totals: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for worker, text in snapshots:
        for family in text_string_to_metric_families(text):
            kinds.setdefault(family.name, (family.type, family.documentation))
            per_worker = family.type == "gauge" and family.name.startswith(PER_WORKER_GAUGES)
            series = totals.setdefault(family.name, {})
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # creation times of the worker's own counters: no sum of those
                labels = dict(sample.labels)
                if per_worker:
                    labels["worker"] = worker
                key = (sample.name, tuple(sorted(labels.items())))
                series[key] = series.get(key, 0.0) + sample.value
    lines = []
    for name, (kind, documentation) in kinds.items():
        exposed = f"{name}_total" if kind == "counter" else name
        lines.append(f"# HELP {exposed} {_escape_help(documentation)}")
        lines.append(f"# TYPE {exposed} {kind}")
        for (sample_name, pairs), value in totals[name].items():
            rendered = ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs)
            lines.append(
                f"{sample_name}{{{rendered}}} {value!r}" if pairs else f"{sample_name} {value!r}"
            )
    return "\n".join(lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class LatencySeries:
    """One label set of a `LatencyByKind` histogram."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Per bucket, not cumulative; the last is above every bound (+Inf)."""
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # `le` buckets: a value equal to a bound counts in that bound's bucket.
        self.counts[bisect.bisect_left(self._bounds, seconds)] += 1
        self.total += seconds


class LatencyByKind(Collector):
    """`shoal_request_seconds{kind}`: the time to answer a client request, by object kind.

    Observed on every request, so it is kept the cheap way: plain counters bumped by the one
    event loop of the process, no lock (prometheus-client's Histogram takes one per observation,
    a sixth of a cache hit's time here), turned into a histogram family when scraped."""

    NAME = "shoal_request_seconds"

    def __init__(self, buckets: Iterable[float]) -> None:
        self._bounds = tuple(sorted(buckets))
        self._by_kind: dict[str, LatencySeries] = {}
        self._by_path: dict[str, LatencySeries] = {}

    def of_kind(self, kind: str) -> LatencySeries:
        series = self._by_kind.get(kind)
        if series is None:
            series = self._by_kind[kind] = LatencySeries(self._bounds)
        return series

    def of_path(self, path: str) -> LatencySeries:
        """The series of the kind of object `path` names (classified once per path); a raw
        target will do: its query does not change the kind."""
        series = self._by_path.get(path)
        if series is None:
            if len(self._by_path) >= MAX_REMEMBERED_PATHS:
                self._by_path.clear()  # paths come from clients: stay bounded
            kind = classify(path.partition("?")[0]).kind.value
            series = self._by_path[path] = self.of_kind(kind)
        return series

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            self.NAME,
            "Time to answer a client request (until the response is fully sent)",
            labels=["kind"],
        )
        for kind, series in sorted(self._by_kind.items()):
            cumulative = list(itertools.accumulate(series.counts))
            buckets = [
                (repr(float(bound)), count)
                for bound, count in zip(self._bounds, cumulative, strict=False)
            ]
            buckets.append(("+Inf", cumulative[-1]))
            family.add_metric([kind], buckets, series.total)
        yield family
