"""Resumable uploads into the origin: a tus 1.0.0 server on aiohttp.

Creators upload source videos from phones on flaky networks; tus (https://tus.io) lets a client
resume an interrupted upload where the server's copy ends instead of starting over. This module
speaks the protocol; `origin.staging` keeps the bytes durable, and `on_complete` hands a finished
upload to whatever packages it.

Supported: the core protocol and the `creation`, `creation-with-upload`, `expiration`,
`checksum` (`sha1`, `sha256`) and `termination` extensions. Not offered, and refused with 400:
deferred lengths (`Upload-Defer-Length`) and concatenation (`Upload-Concat`).
`X-HTTP-Method-Override` is honoured on POST requests only (clients that cannot send PATCH or
DELETE tunnel them through POST; letting a GET or HEAD change state would be unsafe).

Routes (with the default `base_path`): `OPTIONS`/`POST /files/` and `HEAD`/`PATCH`/`DELETE`
`/files/{id}`. Every response, errors and 500s included, carries `Tus-Resumable: 1.0.0`.

Security: every request but OPTIONS needs `Authorization: Bearer <token>`, which
`authenticate` maps to a user id (None: 401). An upload belongs to the user who created it; to
anyone else it does not exist (404, so ids cannot be probed). Ids are checked against the
staging id format before any file is touched, so a hostile id gets 404 and never names a path.

Durability and completion: a 204 to a PATCH means its bytes are fsync'ed. An interrupted body
keeps what was read (the client resumes from the HEAD offset), except a checksummed one, which
is kept whole or not at all. A PATCH or DELETE on an upload another request is using gets 423
(never queued). When the last byte arrives the whole file is hashed (SHA-256, in a thread), the
upload is marked complete, `on_complete` is awaited, and only then is it marked handed off. If
`on_complete` raises, the client still gets its 204 (its bytes are safe) and `resume_pending`,
which also runs every `sweep_interval`, offers the upload again later. **`on_complete` must
therefore be idempotent**: a crash between its return and the hand-off mark, or a failure,
means it is called again with the same upload.

Expiration: unfinished uploads expire `expiration_seconds` after creation (`Upload-Expires` on
POST, PATCH and HEAD). A request for an expired upload gets 410 and removes it (later requests
get 404); the periodic sweep removes the rest. Finished uploads never expire.
"""

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from core.http.conditional import http_date
from origin.staging import (
    ChunkWriter,
    ClaimedUpload,
    UploadBusy,
    UploadNotFound,
    UploadStaging,
    UploadState,
    UploadTooLarge,
    is_upload_id,
)

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
CHECKSUM_ALGORITHMS = ("sha1", "sha256")
MAX_METADATA_BYTES = 4096
EXTENSIONS = ("creation", "creation-with-upload", "expiration", "checksum", "termination")
OFFSET_OCTET_STREAM = "application/offset+octet-stream"

# Body bytes are gathered into writes of about this size, each run in a worker thread: large
# enough that thread hand-offs cost little, small enough that memory per upload stays bounded.
_FLUSH_BYTES = 1 << 20
# ASCII digits only (str.isdigit accepts other scripts' digits), and few enough for int().
_COUNT = re.compile(r"[0-9]{1,19}")
# A metadata key: visible ASCII except the comma (so neither the pair nor the list separator).
_METADATA_KEY = re.compile(r"[!-+\--~]+")
_BEARER_CHALLENGE = 'Bearer realm="tus"'


class MetadataError(ValueError):
    """An `Upload-Metadata` value (or a mapping to encode) that breaks the tus rules."""


def parse_metadata(header: str) -> dict[str, str | None]:
    """The pairs of an `Upload-Metadata` value; `MetadataError` for anything malformed.

    Pairs are separated by commas (spaces after a comma are allowed); a pair is a key, or a key,
    one space and a Base64 value (strict alphabet and padding) that must decode to UTF-8. A key
    without a value maps to None, a key followed by a space and nothing to "". Keys are visible
    ASCII without commas and unique. An empty header means no metadata. Values over
    `MAX_METADATA_BYTES` are refused whole.
    """
    if len(header.encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise MetadataError(f"Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes")
    if not header.strip(" \t"):
        return {}
    metadata: dict[str, str | None] = {}
    for pair in header.split(","):
        key, separator, encoded = pair.lstrip(" \t").partition(" ")
        if not _METADATA_KEY.fullmatch(key):
            raise MetadataError(f"bad metadata key {key!r}")
        if key in metadata:
            raise MetadataError(f"metadata key {key!r} appears twice")
        if not separator:
            metadata[key] = None
            continue
        try:
            metadata[key] = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            # binascii.Error: bad Base64; ValueError: non-ASCII text or non-UTF-8 bytes.
            raise MetadataError(f"metadata value of {key!r} is not Base64 of UTF-8") from exc
    return metadata


def encode_metadata(metadata: Mapping[str, str | None]) -> str:
    """The `Upload-Metadata` value for `metadata` (the inverse of `parse_metadata`)."""
    pairs = []
    for key, value in metadata.items():
        if not _METADATA_KEY.fullmatch(key):
            raise MetadataError(f"bad metadata key {key!r}")
        if value is None:
            pairs.append(key)
            continue
        try:
            encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
        except UnicodeEncodeError as exc:
            raise MetadataError(f"metadata value of {key!r} is not valid text") from exc
        pairs.append(f"{key} {encoded}")
    return ",".join(pairs)


@dataclass(frozen=True)
class CompletedUpload:
    """A finished upload, as handed to `on_complete`."""

    upload_id: str
    user_id: str
    data_path: Path
    length: int
    sha256: str
    metadata: dict[str, str | None]
    created_at: float


Authenticate = Callable[[str], str | None]
"""Bearer token -> the user id it belongs to, or None when it is not valid."""
OnComplete = Callable[[CompletedUpload], Awaitable[None]]
"""Takes over a finished upload; must be idempotent (it may see the same upload again)."""

_Handler = Callable[[web.Request, str], Awaitable[web.Response]]


class _Refusal(Exception):
    """A request the protocol answers with an error status."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class _Checksum:
    algorithm: str
    digest: bytes


class TusService:
    """The tus endpoints over one `UploadStaging`."""

    def __init__(
        self,
        staging: UploadStaging,
        *,
        authenticate: Authenticate,
        on_complete: OnComplete,
        max_size: int,
        expiration_seconds: float = 86_400.0,
        clock: Callable[[], float] = time.time,
        base_path: str = "/files/",
        read_timeout: float = 60.0,
        sweep_interval: float = 300.0,
        discard_after_hand_off: bool = False,
    ) -> None:
        if not (base_path.startswith("/") and base_path.endswith("/")):
            raise ValueError(f"base_path {base_path!r} must start and end with '/'")
        self._staging = staging
        self._authenticate = authenticate
        self._on_complete = on_complete
        self._max_size = max_size
        self._expiration = expiration_seconds
        self._clock = clock
        self._base = base_path
        self._read_timeout = read_timeout
        self._sweep_interval = sweep_interval
        self._discard = discard_after_hand_off
        self._collection_handlers: dict[str, _Handler] = {"POST": self._create}
        self._upload_handlers: dict[str, _Handler] = {
            "HEAD": self._head,
            "PATCH": self._patch,
            "DELETE": self._delete,
        }

    def add_routes(self, app: web.Application) -> None:
        """Route the tus endpoints in `app` and run sweeps and hand-off retries with it."""
        app.router.add_route("*", self._base, self._collection)
        if self._base != "/":
            app.router.add_route("*", self._base.rstrip("/"), self._collection)
        app.router.add_route("*", self._base + "{upload_id}", self._upload)
        # Deeper paths are no upload either, but still get a tus answer (404, Tus-Resumable).
        app.router.add_route("*", self._base + "{tail:.+}", self._upload)
        app.cleanup_ctx.append(self._maintain)

    async def resume_pending(self) -> int:
        """Offer every finished upload not yet handed off to `on_complete`; how many it took.

        Uploads busy with a request right now are skipped (that request hands them off).
        """
        handed_off = 0
        for state in self._staging.uploads():
            if not state.finished or state.handed_off:
                continue
            try:
                with self._staging.claim(state.upload_id) as claimed:
                    if claimed.state.handed_off:
                        continue
                    if (await self._finish(claimed)).handed_off:
                        handed_off += 1
            except (UploadBusy, UploadNotFound):
                continue
            except Exception:
                # One unreadable upload must not keep the others from being handed off.
                log.exception("hand-off of upload %s failed", state.upload_id)
        return handed_off

    # Dispatch: method override, version, authentication, and the headers every answer has.

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._collection_handlers)

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._upload_handlers)

    async def _serve(
        self, request: web.Request, handlers: Mapping[str, _Handler]
    ) -> web.StreamResponse:
        method = request.method
        override = request.headers.get("X-HTTP-Method-Override")
        if method == "POST" and override:
            method = override.strip().upper()
        try:
            if method == "OPTIONS":
                response = self._options()
            else:
                handler = handlers.get(method)
                if handler is None:
                    allowed = ", ".join(["OPTIONS", *handlers])
                    raise _Refusal(405, f"{method} is not allowed here", {"Allow": allowed})
                if request.headers.get("Tus-Resumable") != TUS_VERSION:
                    raise _Refusal(
                        412, f"this server speaks tus {TUS_VERSION}", {"Tus-Version": TUS_VERSION}
                    )
                response = await handler(request, self._user(request))
        except _Refusal as refusal:
            response = _reply(refusal.status, refusal.message, refusal.headers)
        except Exception:
            # %r: the path is the client's, and must not forge log lines.
            log.exception("tus %s %r failed", method, request.raw_path)
            response = _reply(500, "internal error")
        response.headers["Tus-Resumable"] = TUS_VERSION
        log.debug("tus %s %r -> %d", method, request.raw_path, response.status)
        return response

    def _options(self) -> web.Response:
        return _reply(
            204,
            headers={
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": ",".join(EXTENSIONS),
                "Tus-Max-Size": str(self._max_size),
                "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
            },
        )

    def _user(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _Refusal(401, "bearer token required", {"WWW-Authenticate": _BEARER_CHALLENGE})
        user = self._authenticate(token)
        if user is None:
            challenge = _BEARER_CHALLENGE + ', error="invalid_token"'
            raise _Refusal(401, "invalid bearer token", {"WWW-Authenticate": challenge})
        return user

    # The protocol's requests.

    async def _create(self, request: web.Request, user: str) -> web.Response:
        if "Upload-Concat" in request.headers:
            raise _Refusal(400, "concatenation is not supported")
        if "Upload-Defer-Length" in request.headers:
            raise _Refusal(400, "deferred upload length is not supported")
        length = _count(request, "Upload-Length")
        if length > self._max_size:
            raise _Refusal(413, f"uploads are limited to {self._max_size} bytes")
        try:
            metadata = parse_metadata(request.headers.get("Upload-Metadata", ""))
        except MetadataError as exc:
            raise _Refusal(400, str(exc)) from exc
        with_body = _media_type(request) == OFFSET_OCTET_STREAM
        if not with_body and (request.content_length or request.body_exists):
            raise _Refusal(415, f"an upload body must be {OFFSET_OCTET_STREAM}")
        checksum = _checksum(request) if with_body else None
        declared = request.content_length
        if with_body and declared is not None and declared > length:
            raise _Refusal(413, f"the body is longer than Upload-Length {length}")
        now = self._clock()
        created = await asyncio.to_thread(
            self._staging.create,
            user_id=user,
            length=length,
            metadata=metadata,
            created_at=now,
            expires_at=now + self._expiration,
        )
        with self._staging.claim(created.upload_id) as claimed:
            try:
                state = claimed.state
                if with_body:
                    state = await self._receive(request, claimed, checksum)
                if state.finished:
                    state = await self._finish(claimed)
            # The client never learns the URL of a failed creation, so nobody could resume it.
            except asyncio.CancelledError:
                claimed.terminate()  # without a thread: a cancelled task must not await
                raise
            except Exception:
                await asyncio.to_thread(claimed.terminate)
                raise
        location = request.url.origin().with_path(self._base + state.upload_id)
        headers = {"Location": str(location), "Upload-Offset": str(state.offset)}
        headers.update(_expiry(state))
        log.info("upload %s created for %r: %d bytes", state.upload_id, user, length)
        return _reply(201, headers=headers)

    async def _head(self, request: web.Request, user: str) -> web.Response:
        state = self._owned(request, user)
        now = self._clock()
        if state.is_expired(now):
            await asyncio.to_thread(self._staging.expire, state.upload_id, now)
            raise _Refusal(410, "upload expired")
        headers = {
            "Upload-Offset": str(state.offset),
            "Upload-Length": str(state.length),
            "Cache-Control": "no-store",
        }
        if state.metadata:
            headers["Upload-Metadata"] = encode_metadata(state.metadata)
        headers.update(_expiry(state))
        return _reply(200, headers=headers)

    async def _patch(self, request: web.Request, user: str) -> web.Response:
        state = self._owned(request, user)
        if _media_type(request) != OFFSET_OCTET_STREAM:
            raise _Refusal(415, f"PATCH bodies must be {OFFSET_OCTET_STREAM}")
        offset = _count(request, "Upload-Offset")
        checksum = _checksum(request)
        with self._claim(state.upload_id) as claimed:
            await self._refuse_if_expired(claimed)
            current = claimed.state.offset
            if offset != current:
                raise _Refusal(409, f"the upload is at offset {current}, not {offset}")
            state = await self._receive(request, claimed, checksum)
            if state.finished and not state.handed_off:
                state = await self._finish(claimed)
        headers = {"Upload-Offset": str(state.offset), **_expiry(state)}
        return _reply(204, headers=headers)

    async def _delete(self, request: web.Request, user: str) -> web.Response:
        state = self._owned(request, user)
        with self._claim(state.upload_id) as claimed:
            await self._refuse_if_expired(claimed)
            if claimed.state.finished:
                raise _Refusal(403, "a finished upload cannot be terminated")
            await asyncio.to_thread(claimed.terminate)
        log.info("upload %s terminated by %r", state.upload_id, user)
        return _reply(204)

    # Helpers of the requests.

    def _owned(self, request: web.Request, user: str) -> UploadState:
        """The upload the request names, if it exists and belongs to `user` (else 404)."""
        upload_id = request.match_info.get("upload_id", "")
        if is_upload_id(upload_id):
            with contextlib.suppress(UploadNotFound):
                state = self._staging.get(upload_id)
                if state.user_id == user:
                    return state
        raise _Refusal(404, "no such upload")

    @contextlib.contextmanager
    def _claim(self, upload_id: str) -> Iterator[ClaimedUpload]:
        """`UploadStaging.claim`, with its refusals as HTTP statuses."""
        with contextlib.ExitStack() as stack:
            try:
                claimed = stack.enter_context(self._staging.claim(upload_id))
            except UploadBusy as exc:
                raise _Refusal(423, "another request is using this upload") from exc
            except UploadNotFound as exc:
                raise _Refusal(404, "no such upload") from exc
            yield claimed

    async def _refuse_if_expired(self, claimed: ClaimedUpload) -> None:
        if claimed.state.is_expired(self._clock()):
            await asyncio.to_thread(claimed.terminate)
            raise _Refusal(410, "upload expired")

    async def _receive(
        self, request: web.Request, claimed: ClaimedUpload, checksum: _Checksum | None
    ) -> UploadState:
        """Append the request body at the upload's offset; the new state, or a `_Refusal`."""
        state = claimed.state
        declared = request.content_length
        if declared is not None and state.offset + declared > state.length:
            raise _Refusal(413, f"the body runs past Upload-Length {state.length}")
        tentative = checksum is not None
        writer = await asyncio.to_thread(claimed.begin_append, state.offset, tentative=tentative)
        digest = hashlib.new(checksum.algorithm) if checksum is not None else None
        buffered = bytearray()
        failure: _Refusal | None = None
        try:
            while True:
                try:
                    async with asyncio.timeout(self._read_timeout):
                        data = await request.content.readany()
                except TimeoutError:
                    failure = _Refusal(408, f"no body bytes for {self._read_timeout} s")
                    break
                except (OSError, HttpProcessingError) as exc:
                    # The connection dropped, or the body framing broke (bad chunking).
                    failure = _Refusal(400, f"upload body interrupted: {exc}")
                    break
                if not data:
                    break
                if digest is not None:
                    digest.update(data)
                buffered += data
                if len(buffered) >= _FLUSH_BYTES:
                    # Detached before the await: if the handler is cancelled during the write,
                    # the buffer holds only bytes that were not handed to the thread.
                    chunk = bytes(buffered)
                    buffered.clear()
                    await asyncio.to_thread(writer.write, chunk)
            if buffered and (failure is None or not tentative):
                await asyncio.to_thread(writer.write, bytes(buffered))
        except UploadTooLarge as exc:
            await asyncio.to_thread(writer.rollback)
            raise _Refusal(413, str(exc)) from exc
        except asyncio.CancelledError:
            # Shutdown cut the body: settle here and now (briefly blocking the loop), the
            # same way as for a dropped connection, before the claim is released.
            _settle_cancelled(writer, bytes(buffered), keep=not tentative)
            raise
        if failure is not None:
            # A checksummed chunk cannot be verified without all of it; anything else is kept.
            kept = await asyncio.to_thread(writer.rollback if tentative else writer.commit)
            log.info("upload %s: %s; offset %d", kept.upload_id, failure.message, kept.offset)
            raise failure
        if checksum is not None and digest is not None and digest.digest() != checksum.digest:
            await asyncio.to_thread(writer.rollback)
            raise _Refusal(460, f"{checksum.algorithm} checksum mismatch; chunk discarded")
        return await asyncio.to_thread(writer.commit)

    async def _finish(self, claimed: ClaimedUpload) -> UploadState:
        """Complete a finished upload and hand it off; its state afterwards."""
        state = claimed.state
        if state.sha256 is None:
            state = await asyncio.to_thread(claimed.complete)
        assert state.sha256 is not None
        completed = CompletedUpload(
            upload_id=state.upload_id,
            user_id=state.user_id,
            data_path=self._staging.data_path(state.upload_id),
            length=state.length,
            sha256=state.sha256,
            metadata=dict(state.metadata),
            created_at=state.created_at,
        )
        try:
            await self._on_complete(completed)
        except Exception:
            # The bytes are durable and hashed; the periodic resume_pending tries again.
            log.exception("on_complete failed for upload %s; will retry", state.upload_id)
            return state
        state = await asyncio.to_thread(claimed.mark_handed_off)
        if self._discard:
            await asyncio.to_thread(claimed.discard)
            state = claimed.state
        log.info("upload %s handed off (sha256 %s)", state.upload_id, completed.sha256)
        return state

    async def _maintain(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._maintenance_loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _maintenance_loop(self) -> None:
        # Also at start: a restart may have left finished uploads that were never handed off.
        while True:
            try:
                removed = await asyncio.to_thread(self._staging.sweep, self._clock())
                if removed:
                    log.info("expired uploads removed: %s", ", ".join(removed))
                await self.resume_pending()
            except Exception:
                log.exception("upload maintenance failed")
            await asyncio.sleep(self._sweep_interval)


def _settle_cancelled(writer: ChunkWriter, buffered: bytes, *, keep: bool) -> None:
    if not keep:
        writer.rollback()
        return
    with contextlib.suppress(UploadTooLarge):
        writer.write(buffered)
    writer.commit()


def _reply(
    status: int, message: str = "", headers: Mapping[str, str] | None = None
) -> web.Response:
    reason = "Checksum Mismatch" if status == 460 else None
    text = None if status == 204 or not message else message + "\n"
    return web.Response(status=status, reason=reason, text=text, headers=headers)


def _media_type(request: web.Request) -> str:
    # Not request.content_type: it reports application/octet-stream when the field is absent.
    return request.headers.get("Content-Type", "").partition(";")[0].strip().lower()


def _count(request: web.Request, name: str) -> int:
    value = request.headers.get(name)
    if value is None or not _COUNT.fullmatch(value.strip()):
        raise _Refusal(400, f"{name} must be a non-negative integer")
    return int(value)


def _checksum(request: web.Request) -> _Checksum | None:
    value = request.headers.get("Upload-Checksum")
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        supported = ",".join(CHECKSUM_ALGORITHMS)
        raise _Refusal(400, f"checksum algorithm {algorithm!r} not supported (use {supported})")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error as exc:
        raise _Refusal(400, "Upload-Checksum value is not Base64") from exc
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise _Refusal(400, f"Upload-Checksum is not a {algorithm} digest")
    return _Checksum(algorithm, digest)


def _expiry(state: UploadState) -> dict[str, str]:
    return {} if state.finished else {"Upload-Expires": http_date(state.expires_at)}
