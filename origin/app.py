"""The origin's HTTP shell: serves content-store objects with RFC 9110 semantics.

`GET`/`HEAD /v/{tail}` serves the object stored under `videos/{tail}`; `GET /healthz` reports
liveness. Every decision (path safety, preconditions, ranges, media type, cache lifetime) is
made by the pure code in `core`; this module only reads the store and writes the response.

Path safety, and why bad names get 400 rather than 404: the raw request target is checked
before routing (`core.http.paths.check_raw_path`), because aiohttp normalises `/v/../x` and
decodes `%2e%2e` before a handler sees the path; the decoded key is then checked by
`core.keys.validate_key`. Anything refused there (dot segments, encoded dots, slashes,
backslashes or NULs, `//`, control characters, characters outside the key alphabet) is answered
400 Bad Request on every route: the request is malformed, whether or not an object could exist
under some reading of it. 404 means exactly "a well-formed key that names no object", which is
what the store says for a missing object, and for a symlink that leads out of the store (a
`FilesystemStore` never follows one).

Query strings play no part in the lookup (signed-URL tokens will travel there).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from core.config import OriginConfig
from core.http.conditional import (
    ConditionalHeaders,
    Precondition,
    Validators,
    evaluate_preconditions,
    http_date,
)
from core.http.media import cache_control, content_type
from core.http.paths import UnsafePath, check_raw_path
from core.http.ranges import NoRange, SatisfiableRange, UnsatisfiableRange, parse_range
from core.keys import InvalidKey, validate_key
from origin.store.base import ContentStore, ObjectInfo, ObjectNotFound, StoreError

log = logging.getLogger(__name__)

STORE = web.AppKey("store", ContentStore)
CONFIG = web.AppKey("origin_config", OriginConfig)

VIDEO_KEY_PREFIX = "videos/"
ALLOW = "GET, HEAD"
# The store's stat and read are two calls, so an object can be replaced in between (each write
# is atomic; a replacement can still land between the two). A whole-object read that comes back
# with another length than the stat's, or a range read that comes back short, is retried from
# the stat a few times before giving up with 503. A replacement of the same length (or, for a
# range, a longer one) cannot be seen this way; only a store read that also returns the
# object's ETag could, which the ContentStore interface does not offer yet.
READ_ATTEMPTS = 3

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_origin_app(store: ContentStore, config: OriginConfig) -> web.Application:
    """The origin application over `store`; the caller owns the store and closes it."""
    app = web.Application(middlewares=[_check_path_and_log])
    app[STORE] = store
    app[CONFIG] = config
    app.router.add_get("/healthz", _health)
    app.router.add_route("*", "/v/{tail:.+}", _serve_video)
    return app


@web.middleware
async def _check_path_and_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        check_raw_path(request.raw_path)
    except UnsafePath as exc:
        response: web.StreamResponse = _error(400, f"bad request path: {exc}")
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            log.debug("%s %r -> %d", request.method, request.raw_path, exc.status)
            raise
    # %r keeps a hostile path from forging log lines (it escapes newlines and controls).
    log.debug("%s %r -> %d", request.method, request.raw_path, response.status)
    return response


async def _health(request: web.Request) -> web.Response:
    return web.json_response(
        {"status": "ok", "kind": "origin"}, headers={"Cache-Control": "no-store"}
    )


async def _serve_video(request: web.Request) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        # RFC 9110 section 15.5.6: a 405 lists the methods the resource supports in Allow.
        return _error(405, f"method {request.method} not allowed", {"Allow": ALLOW})
    try:
        key = validate_key(VIDEO_KEY_PREFIX + request.match_info["tail"])
    except InvalidKey as exc:
        return _error(400, f"bad object name: {exc}")
    store = request.app[STORE]
    try:
        for _ in range(READ_ATTEMPTS):
            info = await asyncio.to_thread(store.stat, key)
            response = await _respond(request, store, key, info)
            if response is not None:
                return response
    except ObjectNotFound:
        return _error(404, "no such object")
    except InvalidKey as exc:
        return _error(400, f"bad object name: {exc}")
    except StoreError as exc:
        # The message names the store's location: it is for the operator, not the client.
        log.warning("content store unavailable: %s", exc)
        return _error(503, "content store unavailable", {"Retry-After": "1"})
    return _error(503, "the object changed while it was read; retry", {"Retry-After": "1"})


async def _respond(
    request: web.Request, store: ContentStore, key: str, info: ObjectInfo
) -> web.Response | None:
    """The response for `info`, or None if the object changed between the stat and the read."""
    config = request.app[CONFIG]
    headers = {
        "ETag": info.etag,
        "Last-Modified": http_date(info.last_modified),
        "Cache-Control": cache_control(
            key,
            playlist_max_age=config.playlist_max_age,
            segment_max_age=config.segment_max_age,
        ),
    }
    range_field = _field(request, "Range")
    evaluation = evaluate_preconditions(
        request.method,
        ConditionalHeaders(
            if_match=_field(request, "If-Match"),
            if_none_match=_field(request, "If-None-Match"),
            if_modified_since=_field(request, "If-Modified-Since"),
            if_unmodified_since=_field(request, "If-Unmodified-Since"),
            if_range=_field(request, "If-Range"),
        ),
        Validators(etag=info.etag, last_modified=info.last_modified),
        has_range=range_field is not None,
        now=time.time(),
    )
    if evaluation.outcome is Precondition.NOT_MODIFIED:
        # RFC 9110 section 15.4.5: a 304 carries the fields a 200 would use to update a cache
        # (ETag, Cache-Control; Last-Modified too) and no content.
        return web.Response(status=304, headers=headers)
    if evaluation.outcome is Precondition.PRECONDITION_FAILED:
        return _error(412, "precondition failed")
    decision = parse_range(range_field, info.size) if evaluation.honour_range else NoRange()
    if isinstance(decision, UnsatisfiableRange):
        # RFC 9110 section 15.5.17: a 416 says the current length in Content-Range. It carries
        # no cache lifetime: a cache must never keep it in place of the representation.
        return _error(
            416,
            "range not satisfiable",
            {"Content-Range": decision.content_range, "Accept-Ranges": "bytes"},
        )
    headers["Accept-Ranges"] = "bytes"
    if isinstance(decision, SatisfiableRange):
        status, start, length = 206, decision.start, decision.length
        headers["Content-Range"] = decision.content_range
    else:
        status, start, length = 200, 0, info.size
    headers["Content-Type"] = content_type(key)
    if request.method == "HEAD":
        # RFC 9110 section 9.3.2: the same header fields as GET, without the content.
        headers["Content-Length"] = str(length)
        return web.Response(status=status, headers=headers)
    # A whole-object read asks for everything, so that a longer replacement shows as well.
    body = await asyncio.to_thread(store.read, key, start, length if status == 206 else None)
    if len(body) != length:
        return None
    return web.Response(status=status, headers=headers, body=body)


def _field(request: web.Request, name: str) -> str | None:
    """A request field's value, its lines joined with ", " (RFC 9110 section 5.3), or None."""
    values = request.headers.getall(name, None)
    return None if values is None else ", ".join(values)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message + "\n", headers=headers)


__all__ = ["CONFIG", "STORE", "make_origin_app"]
