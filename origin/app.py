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

Query strings play no part in the lookup (signed-URL tokens travel there).

Signed URLs (`core.http.signing`): with `signing_keys`, every playlist is served rewritten so
that its URIs (variant playlists in a master; init and segment URIs in a media playlist; the
URI attributes `manifests.rewrite` knows) carry a token for the video's prefix `/v/<video>/`,
signed with the first key and valid `signed_url_ttl` seconds from now. Relative URIs and
absolute paths under that prefix are signed; URIs elsewhere are left as they are. Because the
tokens expire, a signed playlist:
- lives at most half the token lifetime in caches (`max-age=min(playlist_max_age, ttl // 2)`),
  so whoever gets it from a cache still has at least half the lifetime to play it;
- has no validators (no ETag, no Last-Modified): a 304 would freshen a cached copy whose
  tokens are about to expire, so caches always refetch it whole (playlists are small).
The origin itself does not require tokens: the cache nodes in front of it enforce them
(`require_signed`), and the origin is not meant to be reachable by players.
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
from core.http.media import MediaKind, cache_control, content_type, media_kind
from core.http.paths import UnsafePath, check_raw_path
from core.http.ranges import NoRange, SatisfiableRange, UnsatisfiableRange, parse_range
from core.http.signing import SigningError, sign
from core.keys import InvalidKey, validate_key
from manifests import ManifestError, add_query, is_relative_reference, rewrite_uris
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
PackageVisibility = Callable[[str], bool | None]
VISIBILITY: web.AppKey[PackageVisibility] = web.AppKey("visibility")
"""Whether a package (`/v/<package>/...`) may be served: False hides it (a video processing,
held or rejected); None or True serve it (see `origin.uploads`)."""


def package_hidden(app: web.Application, package_id: str) -> bool:
    """Whether `VISIBILITY` hides the package: everything about it (its files, its swarms)
    answers 404 then."""
    visible = app.get(VISIBILITY)
    return visible is not None and visible(package_id) is False


CORS_FIELDS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Age, Cache-Status, Content-Length, Content-Range, Via",
}
"""On every media response: players (hls.js) load playlists and segments from pages on other
origins, and show the caches' `Cache-Status`. Media is public (signed URLs carry their own
authority), so any page may read it; edges store and pass on these fields like the others."""


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
    if request.path.startswith("/v/"):
        response.headers.update(CORS_FIELDS)
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
    if package_hidden(request.app, request.match_info["tail"].split("/", 1)[0]):
        # Not `no such object` for caches to remember: it may be approved any moment.
        return _error(404, "no such video", {"Cache-Control": "no-store"})
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
    now = time.time()
    signed_body: bytes | None = None
    size: int = info.size
    etag: str | None = info.etag
    last_modified: float | None = info.last_modified
    if config.signing_keys and media_kind(key) is MediaKind.PLAYLIST:
        whole = await asyncio.to_thread(store.read, key, 0, None)
        if len(whole) != info.size:
            return None
        try:
            signed_body = sign_playlist(whole, key, config, now)
        except (ManifestError, SigningError, UnicodeDecodeError) as exc:
            log.warning("cannot sign the URIs of %s: %s", key, exc)
            return _error(500, "the playlist cannot be signed")
        size, etag, last_modified = len(signed_body), None, None
    headers = {
        "Cache-Control": cache_control(
            key,
            playlist_max_age=(
                config.playlist_max_age
                if signed_body is None
                else min(config.playlist_max_age, config.signed_url_ttl // 2)
            ),
            segment_max_age=config.segment_max_age,
        ),
    }
    if etag is not None:
        headers["ETag"] = etag
    if last_modified is not None:
        headers["Last-Modified"] = http_date(last_modified)
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
        Validators(etag=etag, last_modified=last_modified),
        has_range=range_field is not None,
        now=now,
    )
    if evaluation.outcome is Precondition.NOT_MODIFIED:
        # RFC 9110 section 15.4.5: a 304 carries the fields a 200 would use to update a cache
        # (ETag, Cache-Control; Last-Modified too) and no content.
        return web.Response(status=304, headers=headers)
    if evaluation.outcome is Precondition.PRECONDITION_FAILED:
        return _error(412, "precondition failed")
    decision = parse_range(range_field, size) if evaluation.honour_range else NoRange()
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
        status, start, length = 200, 0, size
    headers["Content-Type"] = content_type(key)
    if request.method == "HEAD":
        # RFC 9110 section 9.3.2: the same header fields as GET, without the content.
        headers["Content-Length"] = str(length)
        return web.Response(status=status, headers=headers)
    if signed_body is not None:  # already read whole: it was rewritten
        return web.Response(
            status=status, headers=headers, body=signed_body[start : start + length]
        )
    # A whole-object read asks for everything, so that a longer replacement shows as well.
    body = await asyncio.to_thread(store.read, key, start, length if status == 206 else None)
    if len(body) != length:
        return None
    return web.Response(status=status, headers=headers, body=body)


def sign_playlist(body: bytes, key: str, config: OriginConfig, now: float) -> bytes:
    """The playlist stored under `key` with a token on each URI under its video's prefix."""
    video = key.removeprefix(VIDEO_KEY_PREFIX).split("/", 1)[0]
    prefix = f"/v/{video}/"
    token = add_query(sign(prefix, int(now) + config.signed_url_ttl, config.signing_keys[0]))

    def rewrite(uri: str) -> str:
        return token(uri) if is_relative_reference(uri) or uri.startswith(prefix) else uri

    return rewrite_uris(body.decode("utf-8"), rewrite).encode("utf-8")


def _field(request: web.Request, name: str) -> str | None:
    """A request field's value, its lines joined with ", " (RFC 9110 section 5.3), or None."""
    values = request.headers.getall(name, None)
    return None if values is None else ", ".join(values)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=message + "\n", headers=headers)


__all__ = ["CONFIG", "STORE", "make_origin_app"]
