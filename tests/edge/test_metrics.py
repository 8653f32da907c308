"""Merging the workers' metrics snapshots: sums where sums mean something, series per worker
where they do not, and text that Prometheus' own parser reads back; the lock-free latency
histogram exports what prometheus-client's own would."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from edge.metrics import LatencyByKind, merge_expositions


def worker_registry(requests: int, latency: float, threshold: float) -> str:
    registry = CollectorRegistry()
    counter = Counter("shoal_requests", "Requests", ["kind"], registry=registry)
    counter.labels(kind='seg"ment\\').inc(requests)
    histogram = Histogram("shoal_request_seconds", "Latency", registry=registry, buckets=(0.1, 1))
    histogram.observe(latency)
    Gauge("shoal_cache_objects", "Objects", registry=registry).set(requests)
    Gauge("shoal_admission_hot_threshold", "Threshold", registry=registry).set(threshold)
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_histograms_and_held_gauges_add_up_policy_gauges_stay_per_worker() -> None:
    merged = samples(
        merge_expositions(
            [("101", worker_registry(3, 0.05, 2.0)), ("102", worker_registry(4, 0.5, 7.5))]
        )
    )
    kind = (("kind", 'seg"ment\\'),)
    assert merged[("shoal_requests_total", kind)] == 7
    assert merged[("shoal_request_seconds_bucket", (("le", "0.1"),))] == 1
    assert merged[("shoal_request_seconds_bucket", (("le", "1.0"),))] == 2
    assert merged[("shoal_request_seconds_count", ())] == 2
    assert merged[("shoal_request_seconds_sum", ())] == 0.55
    assert merged[("shoal_cache_objects", ())] == 7
    assert merged[("shoal_admission_hot_threshold", (("worker", "101"),))] == 2.0
    assert merged[("shoal_admission_hot_threshold", (("worker", "102"),))] == 7.5
    # Creation timestamps are each worker's own: none survive the merge.
    assert not any(name.endswith("_created") for name, _ in merged)


def test_one_worker_merges_to_itself() -> None:
    alone = worker_registry(5, 0.2, 1.0)
    merged = samples(merge_expositions([("7", alone)]))
    own = {key: value for key, value in samples(alone).items() if not key[0].endswith("_created")}
    own = {
        (name, (*labels, ("worker", "7")) if name.startswith("shoal_admission") else labels): v
        for (name, labels), v in own.items()
    }
    assert merged == own


def test_the_latency_histogram_matches_prometheus_clients() -> None:
    bounds = (0.001, 0.01, 0.1, 1.0)
    observations = [0.0005, 0.001, 0.004, 0.01, 0.2, 0.2, 3.0]
    ours = LatencyByKind(bounds)
    registry = CollectorRegistry()
    registry.register(ours)
    theirs_registry = CollectorRegistry()
    theirs = Histogram(
        "shoal_request_seconds", "x", ["kind"], registry=theirs_registry, buckets=bounds
    )
    for seconds in observations:
        ours.of_path("/v/a/360p/seg_00001.m4s").observe(seconds)
        theirs.labels(kind="segment").observe(seconds)
    mine = samples(generate_latest(registry).decode())
    reference = {
        key: value
        for key, value in samples(generate_latest(theirs_registry).decode()).items()
        if not key[0].endswith("_created")
    }
    assert mine == reference
