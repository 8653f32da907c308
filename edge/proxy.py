"""The edge node's HTTP shell, for now a pass-through proxy to the next tier.

An edge forwards to a regional node, a regional node to the origin: the same code with different
upstreams. Requests go to the first upstream that answers; a connection failure moves on to the
next one. Bodies are streamed, never buffered whole. The cache (core.CacheNode) comes next.
"""

import logging
from collections.abc import AsyncIterator, Iterable

import aiohttp
from aiohttp import web

from core.config import CacheNodeConfig
from core.http.paths import UnsafePath, check_raw_path

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024

# RFC 9110 section 7.6.1: connection-specific fields are not forwarded. Content-Encoding and
# Content-Length pass through unchanged because bodies are relayed byte for byte.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)

NODE_NAME = web.AppKey("node_name", str)
NODE_TIER = web.AppKey("node_tier", str)
NODE_CONFIG = web.AppKey("node_config", CacheNodeConfig)
UPSTREAM_SESSION = web.AppKey("upstream_session", aiohttp.ClientSession)


def _end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs = list(headers)
    # Fields named in Connection are hop-by-hop too (RFC 9110 section 7.6.1).
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [(n, v) for n, v in pairs if n.lower() not in _HOP_BY_HOP and n.lower() not in named]


def _via(existing: str | None, name: str) -> str:
    hop = f"1.1 {name}"
    return f"{existing}, {hop}" if existing else hop


async def _proxy(request: web.Request) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
    try:
        check_raw_path(request.raw_path)
    except UnsafePath as exc:
        raise web.HTTPBadRequest(text=f"bad request path: {exc}\n") from exc

    app = request.app
    name = app[NODE_NAME]
    headers = _end_to_end(request.headers.items())
    headers.append(("Via", _via(request.headers.get("Via"), name)))
    session = app[UPSTREAM_SESSION]
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=app[NODE_CONFIG].connect_timeout,
        sock_read=app[NODE_CONFIG].upstream_timeout,
    )
    failures: list[str] = []
    for base in app[NODE_CONFIG].upstreams:
        url = base.rstrip("/") + request.raw_path
        try:
            upstream = await session.request(
                request.method,
                url,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
            )
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            # Nothing has been sent to the client yet, so the next upstream can still answer.
            failures.append(f"{base}: {exc.__class__.__name__}")
            log.warning("%s: upstream %s failed: %r", name, base, exc)
            continue
        async with upstream:
            return await _relay(request, upstream, name)
    raise web.HTTPBadGateway(text=f"{name}: no upstream answered ({'; '.join(failures)})\n")


async def _relay(
    request: web.Request, upstream: aiohttp.ClientResponse, name: str
) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    for field_name, value in _end_to_end(upstream.headers.items()):
        response.headers.add(field_name, value)
    response.headers["Via"] = _via(upstream.headers.get("Via"), name)
    await response.prepare(request)
    if request.method != "HEAD":
        async for chunk in upstream.content.iter_chunked(CHUNK_SIZE):
            await response.write(chunk)
    await response.write_eof()
    return response


async def _health(request: web.Request) -> web.Response:
    app = request.app
    return web.json_response(
        {
            "status": "ok",
            "kind": app[NODE_TIER],
            "name": app[NODE_NAME],
            "upstreams": app[NODE_CONFIG].upstreams,
        }
    )


def make_edge_app(config: CacheNodeConfig, *, tier: str, name: str) -> web.Application:
    """The HTTP application of an edge or regional node (`tier`) named `name`."""
    app = web.Application()
    app[NODE_CONFIG] = config
    app[NODE_TIER] = tier
    app[NODE_NAME] = name

    async def upstream_session(app: web.Application) -> AsyncIterator[None]:
        # One pooled session per node: upstream connections are reused across requests.
        connector = aiohttp.TCPConnector(limit=256, enable_cleanup_closed=True)
        async with aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        ) as session:
            app[UPSTREAM_SESSION] = session
            yield

    app.cleanup_ctx.append(upstream_session)
    app.router.add_get("/healthz", _health)
    app.router.add_route("*", "/v/{tail:.*}", _proxy)
    return app


__all__ = ["make_edge_app"]
