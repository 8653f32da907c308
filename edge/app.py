"""The cache node's HTTP shell: aiohttp in front of a `CacheNode` and its `CommandRunner`.

Every request that is not an admin route goes to the node; the answer it commands is written
here: complete bytes (stored or synthetic) or a stream that follows an upstream fetch as it
arrives, so a miss never waits for the whole body. A stream whose fetch fails is cut, so the
client sees fewer bytes than Content-Length announced. A client that disconnects while waiting
is reported to the node (`ClientGone`); one that disconnects mid-stream just stops being fed.

Admin routes: `POST /_shoal/purge` and `POST /_shoal/trending` (bearer tokens), `/healthz`,
`/readyz`, `/metrics` (Prometheus).
"""

import asyncio
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.cache.admission import AdmissionSettings, create_admission_policy
from core.cache.events import PurgeRequested, TrendingHinted
from core.cache.eviction import create_eviction_policy
from core.cache.index import CacheIndex
from core.cache.node import CacheNode, NodeSettings
from core.cache.routing import ParentRouter
from core.config import CacheNodeConfig
from core.http.caching import combine_fields
from core.http.paths import UnsafePath, check_raw_path
from core.keys import InvalidKey, validate_key
from edge.disk import DiskTier
from edge.http1 import EdgeListener, titled
from edge.limits import LISTENER, install_limits
from edge.metrics import (
    SNAPSHOT_SECONDS,
    LatencyByKind,
    merge_expositions,
    read_snapshots,
    remove_snapshot,
    write_snapshot,
)
from edge.runner import Answer, CommandRunner, FetchAborted, FetchBody

log = logging.getLogger(__name__)

RUNNER = web.AppKey("runner", CommandRunner)
CONFIG = web.AppKey("config", CacheNodeConfig)
REGISTRY = web.AppKey("registry", CollectorRegistry)
LATENCY = web.AppKey("latency", LatencyByKind)

MAX_ADMIN_BODY = 64 * 1024
MAX_FORWARDED_BODY = 1024 * 1024
MAX_TRENDING_IDS = 1000
CLIENT_GONE_CHECK_SECONDS = 0.5
"""How often a request waiting for its answer checks that its client is still connected."""


@dataclass(frozen=True)
class WorkerSlot:
    """One of the `count` worker processes of a node (see `deploy.workers`).

    The node's memory and disk budgets are shared out: each worker gets its part of both, and
    of the records a disk tier holds at start (by the record's file name), so the node as a
    whole stays within what it was configured with."""

    index: int
    count: int
    metrics_dir: Path | None = None
    """Where the workers' metrics snapshots meet (see `edge.metrics`); None: this one only."""


WORKER = web.AppKey("worker", WorkerSlot)


def build_node(
    config: CacheNodeConfig,
    *,
    tier: str,
    name: str,
    router: ParentRouter | None = None,
    share: int = 1,
) -> CacheNode:
    """The brain of a node, assembled from its configuration (`router`: a replacement for the
    configured parent router, e.g. with a test's short health back-off; `share`: how many
    workers split the configured budgets)."""
    memory_bytes, disk_bytes = config.memory_bytes // share, config.disk_bytes // share
    return CacheNode(
        NodeSettings(
            name=name,
            tier=tier,
            parents=tuple(config.upstreams),
            origin=config.origin or None,
            negative_ttl=config.negative_ttl,
            uncacheable_ttl=config.uncacheable_ttl,
            signing_keys=tuple(config.signing_keys),
            require_signed=config.require_signed,
            # Ids made by this process never collide with those a disk tier kept from before.
            object_id_prefix=secrets.token_hex(4) + "-",
            disk_promote_hits=config.disk_promote_hits,
        ),
        index=_index(config.eviction, memory_bytes),
        disk_index=_index(config.eviction, disk_bytes) if disk_bytes else None,
        admission=create_admission_policy(
            config.admission,
            AdmissionSettings(
                tier=tier, hot_rate=config.hot_rate or None, half_life=config.half_life
            ),
        ),
        router=ParentRouter(config.upstreams, config.origin or None) if router is None else router,
    )


def _index(eviction: str, capacity_bytes: int) -> CacheIndex:
    return CacheIndex(
        capacity_bytes, create_eviction_policy(eviction, capacity_bytes=capacity_bytes)
    )


def make_cache_app(
    config: CacheNodeConfig,
    *,
    tier: str,
    name: str,
    clock: Callable[[], float] = time.time,
    router: ParentRouter | None = None,
    worker: WorkerSlot | None = None,
) -> web.Application:
    """The HTTP application of an edge or regional cache node.

    `clock` is the node's time (POSIX seconds; HTTP ages are computed from it) and `router` a
    replacement parent router: both for tests, which control time and health back-offs.
    `worker`: this process is one of several serving the node."""
    slot = worker or WorkerSlot(0, 1)
    app = web.Application(client_max_size=MAX_FORWARDED_BODY)
    app[CONFIG] = config
    app[WORKER] = slot
    registry = CollectorRegistry()
    app[REGISTRY] = registry
    limits = install_limits(app, config, registry)
    latency = app[LATENCY] = LatencyByKind(
        (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
    )
    registry.register(latency)
    # Content requests are read and answered by the lean HTTP/1.1 protocol (edge.http1); the
    # routes below see admin requests and whatever that protocol hands to aiohttp.
    app[LISTENER] = EdgeListener(limits, lambda: app[RUNNER], app[LATENCY])

    async def runner_context(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=512, enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=config.connect_timeout, sock_read=config.upstream_timeout
        )
        # The node forwards exactly the fields it decided on: no Accept, Accept-Encoding,
        # User-Agent or Content-Type of aiohttp's own (a default Accept-Encoding would fetch a
        # gzip variant for a client that never asked for one, and store it under its key).
        async with aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        ) as session:
            runner = CommandRunner(
                build_node(config, tier=tier, name=name, router=router, share=slot.count),
                session,
                request_timeout=timeout,
                clock=clock,
                total_timeout=config.upstream_total_timeout,
                disk=DiskTier(Path(config.disk_path)) if config.disk_bytes else None,
            )
            restored = runner.restore_from_disk(slot.index, slot.count)
            if restored:
                log.info("%s: %d objects found in the disk tier", name, restored)
            app[RUNNER] = runner
            registry.register(_NodeCollector(runner))
            directory = slot.metrics_dir
            snapshots = None
            if directory is not None:
                snapshots = asyncio.get_running_loop().create_task(
                    _write_snapshots(registry, directory)
                )
            yield
            if snapshots is not None and directory is not None:
                snapshots.cancel()
                remove_snapshot(directory, os.getpid())
            await runner.close()

    app.cleanup_ctx.append(runner_context)
    app.router.add_get("/healthz", _health)
    app.router.add_get("/readyz", _ready)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/_shoal/purge", _purge)
    app.router.add_post("/_shoal/trending", _trending)
    app.router.add_route("*", "/{tail:.*}", _serve)
    return app


async def _serve(request: web.Request) -> web.StreamResponse:
    runner = request.app[RUNNER]
    started = time.perf_counter()
    try:
        body = None
        if request.method not in ("GET", "HEAD") and request.can_read_body:
            body = await request.read()
        request_id, asked = runner.ask(
            request.method, request.raw_path, combine_fields(request.headers.items()), body
        )
        answer: Answer | None = (
            asked
            if isinstance(asked, Answer)
            else await _await_answer(request, runner, request_id, asked)
        )
        if answer is None:
            # Nobody reads this: aiohttp's attempt to send it fails quietly.
            return web.Response(status=499, reason="Client Closed Request")
        return await _write(request, answer)
    finally:
        request.app[LATENCY].of_path(request.path).observe(time.perf_counter() - started)


async def _await_answer(
    request: web.Request, runner: CommandRunner, request_id: int, answer: "asyncio.Future[Answer]"
) -> Answer | None:
    """The node's answer to a request, or None once its client has gone.

    aiohttp does not cancel handlers when a client disconnects (unless the server runs with
    handler_cancellation, when this is cancelled instead), so the connection is checked now and
    then while the answer is pending: a departed client is reported to the node (`ClientGone`),
    which then neither answers it nor fetches anything on its behalf.
    """
    try:
        while True:
            done, _ = await asyncio.wait((answer,), timeout=CLIENT_GONE_CHECK_SECONDS)
            if done:
                return answer.result()
            if request.transport is None or request.transport.is_closing():
                runner.client_gone(request_id)
                return None
    except asyncio.CancelledError:
        runner.client_gone(request_id)
        raise


async def _write(request: web.Request, answer: Answer) -> web.StreamResponse:
    runner = request.app[RUNNER]
    delivery = answer.delivery
    headers = {titled(name): value for name, value in delivery.headers.items()}
    body = answer.body
    if not isinstance(body, FetchBody):
        content = answer.complete_body()
        complete = web.Response(status=delivery.status, headers=headers)
        if delivery.with_body and content:
            if delivery.byte_range is not None:
                first, last = delivery.byte_range
                content = content[first : last + 1]
            complete.body = content
            runner.bytes_served += len(content)
        return complete
    response = web.StreamResponse(status=delivery.status, headers=headers)
    try:
        await response.prepare(request)
        if delivery.with_body:
            offset, end = (0, None) if delivery.byte_range is None else delivery.byte_range
            end = None if end is None else end + 1
            while (chunk := await body.read_from(offset, end)) is not None:
                await response.write(chunk)
                offset += len(chunk)
                runner.bytes_served += len(chunk)
        await response.write_eof()
    except FetchAborted:
        # The upstream failed mid-body: cut the connection so the client sees it.
        if request.transport is not None:
            request.transport.abort()
    except ConnectionError:
        pass  # the client left mid-stream; the fetch goes on for the others and the cache
    return response


# ---- admin routes -------------------------------------------------------------------------------


def _authorised(request: web.Request, token: str, purpose: str) -> None:
    """Raise 401 for a missing bearer token, 403 for a wrong one or a disabled API."""
    field = request.headers.get("Authorization", "")
    scheme, _, presented = field.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise web.HTTPUnauthorized(
            text=f"{purpose} needs a bearer token\n",
            headers={"WWW-Authenticate": f'Bearer realm="shoal {purpose}"'},
        )
    if not token:
        raise web.HTTPForbidden(text=f"{purpose} is disabled on this node (no token configured)\n")
    # Constant time: the comparison must not reveal how much of the token was right.
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise web.HTTPForbidden(text=f"wrong token for {purpose}\n")


async def _json_body(request: web.Request) -> dict[str, object]:
    if request.content_length is not None and request.content_length > MAX_ADMIN_BODY:
        raise web.HTTPRequestEntityTooLarge(MAX_ADMIN_BODY, request.content_length)
    # `read(n)` returns what has arrived, up to n bytes: loop until the end of the body, or one
    # byte past the limit (a chunked body announces no length).
    raw = bytearray()
    while len(raw) <= MAX_ADMIN_BODY:
        chunk = await request.content.read(MAX_ADMIN_BODY + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > MAX_ADMIN_BODY:
        raise web.HTTPRequestEntityTooLarge(MAX_ADMIN_BODY, len(raw))
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=f"expected a JSON object: {exc}\n") from exc
    if not isinstance(document, dict):
        raise web.HTTPBadRequest(text="expected a JSON object\n")
    return document


def _video_id(value: object) -> str:
    if not isinstance(value, str):
        raise web.HTTPBadRequest(text="video ids must be strings\n")
    try:
        validate_key(value)
    except InvalidKey as exc:
        raise web.HTTPBadRequest(text=f"bad video id: {exc}\n") from exc
    if "/" in value:
        raise web.HTTPBadRequest(text="bad video id: contains '/'\n")
    return value


async def _purge(request: web.Request) -> web.Response:
    """Purge one path (`{"path": "/v/abc/360p/index.m3u8"}`) or a video (`{"video": "abc"}`)."""
    _authorised(request, request.app[CONFIG].purge_token, "purge")
    document = await _json_body(request)
    runner = request.app[RUNNER]
    if set(document) == {"video"}:
        event = PurgeRequested(f"/v/{_video_id(document['video'])}/", True, runner.now())
    elif set(document) == {"path"} and isinstance(document["path"], str):
        try:
            path = check_raw_path(document["path"])
        except UnsafePath as exc:
            raise web.HTTPBadRequest(text=f"bad path: {exc}\n") from exc
        event = PurgeRequested(path, False, runner.now())
    else:
        raise web.HTTPBadRequest(text='expected {"path": "/..."} or {"video": "<id>"}\n')
    before = runner.node.stats.purged
    runner.feed(event)
    return web.json_response({"purged": runner.node.stats.purged - before})


async def _trending(request: web.Request) -> web.Response:
    """Trending hints from the origin: `{"videos": ["abc", ...]}`."""
    _authorised(request, request.app[CONFIG].hint_token, "trending hints")
    document = await _json_body(request)
    videos = document.get("videos")
    if set(document) != {"videos"} or not isinstance(videos, list):
        raise web.HTTPBadRequest(text='expected {"videos": ["<id>", ...]}\n')
    if len(videos) > MAX_TRENDING_IDS:
        raise web.HTTPBadRequest(text=f"at most {MAX_TRENDING_IDS} video ids per hint\n")
    ids = tuple(dict.fromkeys(_video_id(v) for v in videos))
    runner = request.app[RUNNER]
    runner.feed(TrendingHinted(ids, runner.now()))
    return web.json_response({"accepted": len(ids)})


async def _health(request: web.Request) -> web.Response:
    node = request.app[RUNNER].node
    slot = request.app[WORKER]
    return web.json_response(
        {
            "status": "ok",
            "kind": node.settings.tier,
            "name": node.settings.name,
            "upstreams": list(node.settings.parents),
            "worker": {"index": slot.index, "of": slot.count, "pid": os.getpid()},
        },
        headers={"Cache-Control": "no-store"},
    )


async def _ready(request: web.Request) -> web.Response:
    runner = request.app[RUNNER]
    ready = runner.node.has_usable_upstream(runner.now())
    return web.json_response(
        {"ready": ready}, status=200 if ready else 503, headers={"Cache-Control": "no-store"}
    )


async def _metrics(request: web.Request) -> web.Response:
    own = generate_latest(request.app[REGISTRY])
    directory = request.app[WORKER].metrics_dir
    if directory is not None:
        # The whole node: this worker's fresh counts beside the others' latest snapshots.
        write_snapshot(directory, own)
        own = merge_expositions(read_snapshots(directory)).encode()
    return web.Response(
        body=own, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


async def _write_snapshots(registry: CollectorRegistry, directory: Path) -> None:
    while True:
        try:
            write_snapshot(directory, generate_latest(registry))
        except OSError as exc:
            log.warning("metrics snapshot in %s failed: %r", directory, exc)
        await asyncio.sleep(SNAPSHOT_SECONDS)


class _NodeCollector(Collector):
    """Exports the node's own counters at scrape time (no double bookkeeping)."""

    def __init__(self, runner: CommandRunner) -> None:
        self._runner = runner

    def collect(self) -> Iterator[Metric]:
        node = self._runner.node
        stats = node.stats
        for name, help_text, counts in (
            ("shoal_requests", "Client requests by object kind", stats.requests),
            ("shoal_cache_hits", "Requests answered from the cache", stats.hits),
            ("shoal_cache_misses", "Requests that needed the upstream", stats.misses),
        ):
            family = CounterMetricFamily(name, help_text, labels=["kind"])
            for kind, count in sorted(counts.items()):
                family.add_metric([kind], count)
            yield family
        for name, help_text, value in (
            ("shoal_passes", "Requests passed through uncached", stats.passes),
            ("shoal_upstream_fetches", "Requests sent upstream", stats.upstream_fetches),
            ("shoal_coalesced_waiters", "Requests that joined a fetch in flight",
             stats.coalesced_waiters),
            ("shoal_admission_rejects", "Fetched objects not admitted", stats.admission_rejects),
            ("shoal_evictions", "Objects evicted", stats.evictions),
            ("shoal_stale_served", "Stale responses served", stats.stale_served),
            ("shoal_upstream_failures", "Upstream fetches that failed", stats.upstream_failures),
            ("shoal_purged_keys", "Keys purged", stats.purged),
            ("shoal_disk_demotions", "Objects moved from memory to disk", stats.demotions),
            ("shoal_disk_promotions", "Objects moved from disk to memory", stats.promotions),
            ("shoal_bytes_served", "Body bytes sent to clients", self._runner.bytes_served),
        ):  # fmt: skip
            yield CounterMetricFamily(name, help_text, value=value)
        yield GaugeMetricFamily(
            "shoal_cache_objects", "Objects stored (memory and disk)", value=node.stored_objects
        )
        yield GaugeMetricFamily(
            "shoal_cache_bytes", "Bytes charged to the memory tier", value=node.stored_bytes
        )
        yield GaugeMetricFamily(
            "shoal_disk_objects", "Objects in the disk tier", value=node.disk_objects
        )
        yield GaugeMetricFamily(
            "shoal_disk_bytes", "Bytes charged to the disk tier", value=node.disk_bytes
        )
        for figure, amount in node.admission_gauges(self._runner.now()).items():
            yield GaugeMetricFamily(
                f"shoal_admission_{figure}", f"Admission policy state: {figure}", value=amount
            )
