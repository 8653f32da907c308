"""A local HTTP proxy so any HLS player (ffplay, mpv, hls.js) plays through the peer.

    http://127.0.0.1:PORT/v/<video>/master.m3u8

Playlists, init segments and anything else are forwarded from the edge unchanged (their URIs
are relative, so the player keeps asking the proxy). A media playlist opens its rendition in
the peer; that rendition's segments are then answered by the peer's brain (storage, peers or
the edge). The player's position is taken to be the start of the segment it asks for: players
buffer ahead, so this errs on the side of HTTP. ``GET /stats`` is the JSON of
``Peer.stats()``; ``GET /metrics`` the same counters for Prometheus.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.p2p import scheduler as brain
from manifests.model import ManifestError
from peer_sdk.peer import Peer
from peer_sdk.stream import SegmentUnavailable

log = logging.getLogger(__name__)
PEER = web.AppKey("peer", Peer)
_FORWARDED_HEADERS = ("Content-Type", "Cache-Control", "Last-Modified", "ETag")


class PeerCollector(Collector):
    """Reads ``Peer.stats()`` at scrape time: the counters live in the brains, not here."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer

    def collect(self) -> Iterator[Metric]:
        stats = self._peer.stats()
        received = CounterMetricFamily(
            "shoal_peer_received_bytes", "Segment bytes received, by source", labels=["source"]
        )
        received.add_metric(["http"], stats["http_bytes"])
        received.add_metric(["p2p"], stats["p2p_bytes"])
        yield received
        yield CounterMetricFamily(
            "shoal_peer_uploaded_bytes",
            "Segment bytes sent to peers",
            value=stats["uploaded_bytes"],
        )
        yield GaugeMetricFamily(
            "shoal_peer_offload_ratio", "p2p / (p2p + http) bytes", value=stats["offload_ratio"]
        )
        yield CounterMetricFamily(
            "shoal_peer_integrity_failures",
            "Segments from peers that failed the SHA-256 check",
            value=stats["integrity_failures"],
        )
        yield CounterMetricFamily(
            "shoal_peer_peers_dropped",
            "Peers closed for misbehaviour",
            value=stats["peers_dropped"],
        )
        yield GaugeMetricFamily(
            "shoal_peer_connected_peers", "Open peer connections", value=stats["connected_peers"]
        )
        per_peer = CounterMetricFamily(
            "shoal_peer_peer_bytes", "Bytes exchanged with each peer", labels=["peer", "direction"]
        )
        for peer_id, counters in stats["peers"].items():
            per_peer.add_metric([peer_id, "received"], counters["downloaded"])
            per_peer.add_metric([peer_id, "sent"], counters["uploaded"])
        yield per_peer


def make_proxy_app(peer: Peer) -> web.Application:
    app = web.Application()
    app[PEER] = peer
    registry = CollectorRegistry()
    registry.register(PeerCollector(peer))

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(peer.stats())

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app.router.add_get("/stats", stats)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v/{tail:.+}", _media)
    return app


async def _media(request: web.Request) -> web.StreamResponse:
    peer = request.app[PEER]
    parts = request.match_info["tail"].split("/")
    if len(parts) == 3:
        video_id, rendition, name = parts
        if name.endswith(".m3u8"):
            try:
                await peer.open(video_id, rendition)
            except (LookupError, ManifestError, aiohttp.ClientError) as error:
                log.warning("%s/%s plays over HTTP only: %s", video_id, rendition, error)
        info = peer.rendition(video_id, rendition)
        runner = peer.runner(video_id, rendition)
        segment = next((s for s in info.segments if s.uri == name), None) if info else None
        if runner is not None and segment is not None:
            runner.feed(brain.PlaybackAdvanced(segment.start, rate=1.0))
            try:
                data = await runner.segment(segment.segment_id)
            except SegmentUnavailable as error:
                raise web.HTTPBadGateway(text=f"{error}\n") from error
            return web.Response(body=data, content_type="video/iso.segment")
    return await _forward(peer, request)


async def _forward(peer: Peer, request: web.Request) -> web.Response:
    """Pass a request through to the edge (playlists, init segments, integrity lists)."""
    try:
        async with peer.http.get(f"{peer.edge_url}{request.rel_url}") as upstream:
            body = await upstream.read()
            headers = {h: upstream.headers[h] for h in _FORWARDED_HEADERS if h in upstream.headers}
            return web.Response(status=upstream.status, body=body, headers=headers)
    except aiohttp.ClientError as error:
        raise web.HTTPBadGateway(text=f"edge: {error}\n") from error
