"""Prometheus metrics of a tracker, read from its `SwarmBook` at scrape time.

The book already counts everything; a collector reads those counters when `/metrics` is
scraped, so nothing is counted twice and the hot path pays nothing for metrics.
"""

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from core.p2p.swarm import Reject, SwarmBook


class _BookCollector(Collector):
    def __init__(self, book: SwarmBook, connections: Callable[[], int]) -> None:
        self._book = book
        self._connections = connections

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        book, counters = self._book, self._book.counters
        yield GaugeMetricFamily(
            "shoal_tracker_peers", "swarm memberships of local peers", value=book.peer_count
        )
        yield GaugeMetricFamily(
            "shoal_tracker_swarms", "swarms with a local peer", book.swarm_count
        )
        yield GaugeMetricFamily(
            "shoal_tracker_connections", "open WebSocket connections", self._connections()
        )
        yield CounterMetricFamily(
            "shoal_tracker_announces", "announces accepted (answers excluded)", counters.announces
        )
        relays = CounterMetricFamily(
            "shoal_tracker_relays", "offers and answers relayed to a peer", labels=["kind"]
        )
        relays.add_metric(["offer"], counters.offers_relayed)
        relays.add_metric(["answer"], counters.answers_relayed)
        yield relays
        dropped = CounterMetricFamily(
            "shoal_tracker_dropped", "relays whose target was gone", labels=["kind"]
        )
        dropped.add_metric(["answer"], counters.answers_dropped)
        dropped.add_metric(["forwarded"], counters.forwards_dropped)
        yield dropped
        yield CounterMetricFamily(
            "shoal_tracker_peers_expired", "peers dropped for silence", counters.peers_expired
        )
        rejects = CounterMetricFamily(
            "shoal_tracker_rejects", "messages refused, by reason", labels=["reason"]
        )
        for reason in Reject:
            rejects.add_metric([reason.label], counters.rejects[reason])
        yield rejects


def metrics_registry(book: SwarmBook, connections: Callable[[], int]) -> CollectorRegistry:
    """A private registry (one per app: tests run several trackers in one process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_BookCollector(book, connections))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
