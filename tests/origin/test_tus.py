"""The tus server on a real aiohttp AppRunner on 127.0.0.1: every status path, and tuspy.

Requests go through aiohttp's client; bodies that must stall or break half-way are written
by hand on a raw TCP connection. The origin can restart on the same port over the same
staging directory, which is how the resume-after-restart test works with an unmodified tus
client (tuspy, run in a thread because it is synchronous).
"""

import asyncio
import base64
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from tusclient.client import TusClient
from yarl import URL

from core.http.conditional import http_date
from origin.staging import UploadBusy, UploadStaging
from origin.tus import (
    CHECKSUM_ALGORITHMS,
    MAX_METADATA_BYTES,
    TUS_VERSION,
    CompletedUpload,
    MetadataError,
    TusService,
    encode_metadata,
    parse_metadata,
)

T0 = 1_700_000_000.0
EXPIRATION = 3600.0
MAX_SIZE = 16 << 20
TOKENS = {"alice-token": "alice", "bob-token": "bob"}
HELLO_SHA1 = "Kq5sNclPz7QV2+lfQIuc6R7oRu0="  # the tus spec's example for b"hello world"


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Origin:
    """A TusService in a real server; `restart` builds a new service on the same dir and port."""

    def __init__(self, root: Path, **options: Any) -> None:
        self.root = root
        self.options = options
        self.clock = FakeClock()
        self.completed: list[CompletedUpload] = []
        self.contents: dict[str, bytes] = {}
        """The data file of each completed upload, as `on_complete` could read it."""
        self.failures_left = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/files/"

    async def start(self) -> None:
        self.staging = UploadStaging(self.root)
        self.service = TusService(
            self.staging,
            authenticate=self._authenticate,
            on_complete=self._on_complete,
            max_size=MAX_SIZE,
            expiration_seconds=EXPIRATION,
            clock=self.clock,
            **self.options,
        )
        app = web.Application()
        self.service.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def _authenticate(self, token: str) -> str | None:
        if token == "explode":
            raise RuntimeError("identity provider down")
        return TOKENS.get(token)

    async def _on_complete(self, upload: CompletedUpload) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("packaging queue unavailable")
        self.contents[upload.upload_id] = upload.data_path.read_bytes()
        self.completed.append(upload)


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[Origin]:
    server = Origin(tmp_path / "staging")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def tus(token: str | None = "alice-token", **fields: str) -> dict[str, str]:
    """Request fields of a tus client; keyword names use _ for - (Upload_Offset)."""
    headers = {"Tus-Resumable": TUS_VERSION}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update({name.replace("_", "-"): value for name, value in fields.items()})
    return headers


def patching(offset: int, token: str = "alice-token", **fields: str) -> dict[str, str]:
    return tus(
        token, Content_Type="application/offset+octet-stream", Upload_Offset=str(offset), **fields
    )


def checked(response: aiohttp.ClientResponse, status: int) -> aiohttp.ClientResponse:
    """`response`, after asserting its status and that it carries Tus-Resumable."""
    assert response.status == status, (response.status, response.headers)
    assert response.headers.get("Tus-Resumable") == TUS_VERSION
    return response


async def create(
    http: aiohttp.ClientSession, origin: Origin, length: int, token: str = "alice-token"
) -> str:
    async with http.post(origin.url, headers=tus(token, Upload_Length=str(length))) as response:
        checked(response, 201)
        return response.headers["Location"]


async def offset_of(http: aiohttp.ClientSession, url: str) -> int:
    async with http.head(url, headers=tus()) as response:
        return int(checked(response, 200).headers["Upload-Offset"])


async def patch(
    http: aiohttp.ClientSession, url: str, offset: int, body: bytes, status: int, **fields: str
) -> Mapping[str, str]:
    async with http.patch(url, data=body, headers=patching(offset, **fields)) as response:
        return checked(response, status).headers


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def raw_patch(
    origin: Origin, url: str, offset: int, declared: int, sent: bytes, **fields: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A PATCH declaring `declared` body bytes of which only `sent` are written (so far)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", origin.port)
    lines = [f"PATCH /files/{upload_id(url)} HTTP/1.1", f"Host: 127.0.0.1:{origin.port}"]
    headers = patching(offset, Content_Length=str(declared), **fields)
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + sent)
    await writer.drain()
    return reader, writer


async def read_status(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *field_lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in field_lines if line)
    return int(status_line.split()[1]), {name.lower(): value for name, value in fields.items()}


async def wait_until_claimed(origin: Origin, url: str) -> None:
    """Until the server's request holds the upload (claiming it briefly ourselves otherwise)."""
    for _ in range(500):
        try:
            with origin.staging.claim(upload_id(url)):
                pass
        except UploadBusy:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server never claimed the upload")


async def wait_for_offset(http: aiohttp.ClientSession, origin: Origin, url: str, want: int) -> None:
    """Until the upload is free again at `want` (a cut-off request is settled asynchronously)."""
    for _ in range(500):
        if origin.staging.get(upload_id(url)).offset != want:
            await asyncio.sleep(0.01)
            continue
        try:
            with origin.staging.claim(upload_id(url)):
                break
        except UploadBusy:
            await asyncio.sleep(0.01)
    assert await offset_of(http, url) == want


# OPTIONS, version and authentication.


async def test_options_advertise_the_server(origin: Origin, http: aiohttp.ClientSession) -> None:
    async with http.options(origin.url) as response:
        checked(response, 204)
        assert response.headers["Tus-Version"] == "1.0.0"
        extensions = set(response.headers["Tus-Extension"].split(","))
        assert extensions == {
            "creation",
            "creation-with-upload",
            "expiration",
            "checksum",
            "termination",
        }
        assert response.headers["Tus-Max-Size"] == str(MAX_SIZE)
        assert response.headers["Tus-Checksum-Algorithm"] == "sha1,sha256"


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0"])
async def test_unsupported_version_is_412(
    origin: Origin, http: aiohttp.ClientSession, version: str | None
) -> None:
    url = await create(http, origin, 10)
    headers = patching(0)
    del headers["Tus-Resumable"]
    if version is not None:
        headers["Tus-Resumable"] = version
    async with http.patch(url, data=b"abc", headers=headers) as response:
        assert checked(response, 412).headers["Tus-Version"] == TUS_VERSION
    async with http.post(origin.url, headers={**headers, "Upload-Length": "5"}) as response:
        checked(response, 412)
    assert await offset_of(http, url) == 0
    assert len(origin.staging.uploads()) == 1


@pytest.mark.parametrize("authorization", [None, "Bearer", "Basic YWxpY2U6cHc=", "Bearer nope"])
async def test_missing_or_bad_credentials_are_401(
    origin: Origin, http: aiohttp.ClientSession, authorization: str | None
) -> None:
    url = await create(http, origin, 10)
    headers = tus(None, Upload_Length="10")
    if authorization is not None:
        headers["Authorization"] = authorization
    async with http.post(origin.url, headers=headers) as response:
        assert checked(response, 401).headers["WWW-Authenticate"].startswith("Bearer")
    async with http.head(url, headers=headers) as response:
        checked(response, 401)
    assert len(origin.staging.uploads()) == 1


async def test_a_failing_authenticator_is_a_500_with_the_tus_header(
    origin: Origin, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="origin.tus"):
        async with http.post(origin.url, headers=tus("explode", Upload_Length="1")) as response:
            checked(response, 500)
    assert "identity provider down" in caplog.text


async def test_other_methods_are_405(origin: Origin, http: aiohttp.ClientSession) -> None:
    url = await create(http, origin, 10)
    async with http.get(url, headers=tus()) as response:
        assert checked(response, 405).headers["Allow"] == "OPTIONS, HEAD, PATCH, DELETE"
    async with http.put(origin.url, headers=tus()) as response:
        assert checked(response, 405).headers["Allow"] == "OPTIONS, POST"


# Creation.


async def test_post_creates_an_upload(origin: Origin, http: aiohttp.ClientSession) -> None:
    metadata = "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential"
    headers = tus(Upload_Length="100", Upload_Metadata=metadata)
    async with http.post(origin.url.rstrip("/"), headers=headers) as response:
        checked(response, 201)
        location = response.headers["Location"]
        assert response.headers["Upload-Expires"] == http_date(T0 + EXPIRATION)
    assert location.startswith(origin.url)
    state = origin.staging.get(upload_id(location))
    assert (state.user_id, state.length, state.offset) == ("alice", 100, 0)
    assert state.metadata == {"filename": "world_domination_plan.pdf", "is_confidential": None}

    async with http.head(location, headers=tus()) as response:
        checked(response, 200)
        assert response.headers["Upload-Offset"] == "0"
        assert response.headers["Upload-Length"] == "100"
        assert response.headers["Cache-Control"] == "no-store"
        assert parse_metadata(response.headers["Upload-Metadata"]) == state.metadata


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"Upload-Length": "-1"},
        {"Upload-Length": "ten"},
        {"Upload-Length": "1e3"},
        {"Upload-Defer-Length": "1"},
        {"Upload-Length": "10", "Upload-Concat": "partial"},
        {"Upload-Length": "10", "Upload-Metadata": "name !!!!"},
        {"Upload-Length": "10", "Upload-Metadata": "name /w=="},  # not UTF-8
        {"Upload-Length": "10", "Upload-Metadata": "a YQ==,a Yg=="},
        {"Upload-Length": "10", "Upload-Metadata": "k " + "QUFB" * (MAX_METADATA_BYTES // 4)},
    ],
)
async def test_bad_creation_requests_are_400(
    origin: Origin, http: aiohttp.ClientSession, fields: dict[str, str]
) -> None:
    async with http.post(origin.url, headers={**tus(), **fields}) as response:
        checked(response, 400)
    assert origin.staging.uploads() == []


async def test_upload_longer_than_the_maximum_is_413(
    origin: Origin, http: aiohttp.ClientSession
) -> None:
    headers = tus(Upload_Length=str(MAX_SIZE + 1))
    async with http.post(origin.url, headers=headers) as response:
        checked(response, 413)
    await create(http, origin, MAX_SIZE)
    assert len(origin.staging.uploads()) == 1


async def test_empty_upload_is_complete_at_once(
    origin: Origin, http: aiohttp.ClientSession
) -> None:
    url = await create(http, origin, 0)
    [completed] = origin.completed
    assert completed.sha256 == hashlib.sha256(b"").hexdigest()
    assert completed.upload_id == upload_id(url)
    assert origin.staging.get(completed.upload_id).handed_off


async def test_creation_with_upload(origin: Origin, http: aiohttp.ClientSession) -> None:
    headers = tus(Upload_Length="11", Content_Type="application/offset+octet-stream")
    async with http.post(origin.url, data=b"hello", headers=headers) as response:
        checked(response, 201)
        assert response.headers["Upload-Offset"] == "5"
        url = response.headers["Location"]
    await patch(http, url, 5, b" world", 204)
    [completed] = origin.completed
    assert completed.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert (completed.length, completed.user_id) == (11, "alice")


@pytest.mark.parametrize(
    ("body", "fields", "status"),
    [
        (b"hello", {"Upload-Checksum": f"sha1 {HELLO_SHA1}"}, 460),
        (b"hello world, and more", {}, 413),
        (b"hello", {"Content-Type": "text/plain"}, 415),
    ],
)
async def test_failed_creation_with_upload_leaves_nothing(
    origin: Origin, http: aiohttp.ClientSession, body: bytes, fields: dict[str, str], status: int
) -> None:
    headers = {**tus(Upload_Length="11", Content_Type="application/offset+octet-stream"), **fields}
    async with http.post(origin.url, data=body, headers=headers) as response:
        checked(response, status)
    assert origin.staging.uploads() == []
    assert list(origin.root.iterdir()) == []


# PATCH.


async def test_patch_appends_and_completes(origin: Origin, http: aiohttp.ClientSession) -> None:
    url = await create(http, origin, 11)
    headers = await patch(http, url, 0, b"hello", 204)
    assert headers["Upload-Offset"] == "5"
    assert headers["Upload-Expires"] == http_date(T0 + EXPIRATION)
    assert origin.completed == []
    headers = await patch(http, url, 5, b" world", 204)
    assert headers["Upload-Offset"] == "11"
    assert "Upload-Expires" not in headers  # finished uploads do not expire
    [completed] = origin.completed
    assert completed.data_path.read_bytes() == b"hello world"
    assert completed.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert origin.staging.get(upload_id(url)).handed_off


async def test_patch_needs_the_offset_media_type(
    origin: Origin, http: aiohttp.ClientSession
) -> None:
    url = await create(http, origin, 11)
    headers = {**patching(0), "Content-Type": "application/octet-stream"}
    async with http.patch(url, data=b"hello", headers=headers) as response:
        checked(response, 415)
    assert await offset_of(http, url) == 0


async def test_patch_at_the_wrong_offset_is_409(
    origin: Origin, http: aiohttp.ClientSession
) -> None:
    url = await create(http, origin, 11)
    await patch(http, url, 0, b"hello", 204)
    await patch(http, url, 0, b"hello", 409)
    await patch(http, url, 6, b"world", 409)
    async with http.patch(
        url, data=b"x", headers={**patching(0), "Upload-Offset": "-5"}
    ) as response:
        checked(response, 400)
    assert await offset_of(http, url) == 5


async def test_patch_past_the_length_is_413(origin: Origin, http: aiohttp.ClientSession) -> None:
    url = await create(http, origin, 4)
    await patch(http, url, 0, b"abc", 204)
    await patch(http, url, 3, b"de", 413)

    async def chunked() -> AsyncIterator[bytes]:
        yield b"d"
        yield b"e"

    # Without Content-Length the overflow is only seen while writing: nothing is kept either.
    async with http.patch(url, data=chunked(), headers=patching(3)) as response:
        checked(response, 413)
    assert await offset_of(http, url) == 3
    assert origin.completed == []


@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [
        ("sha1", HELLO_SHA1),
        ("sha256", base64.b64encode(hashlib.sha256(b"hello world").digest()).decode()),
    ],
)
async def test_checksums(
    origin: Origin, http: aiohttp.ClientSession, algorithm: str, digest: str
) -> None:
    assert algorithm in CHECKSUM_ALGORITHMS
    url = await create(http, origin, 22)
    await patch(http, url, 0, b"hello there", 460, Upload_Checksum=f"{algorithm} {digest}")
    assert await offset_of(http, url) == 0
    assert origin.staging.data_path(upload_id(url)).stat().st_size == 0
    headers = await patch(
        http, url, 0, b"hello world", 204, Upload_Checksum=f"{algorithm} {digest}"
    )
    assert headers["Upload-Offset"] == "11"


@pytest.mark.parametrize(
    "checksum", ["md5 XrY7u+Ae7tCTyyK7j1rNww==", "sha1 not-base64!", "sha1 aGVsbG8=", "sha1"]
)
async def test_unusable_checksums_are_400(
    origin: Origin, http: aiohttp.ClientSession, checksum: str
) -> None:
    url = await create(http, origin, 11)
    await patch(http, url, 0, b"hello world", 400, Upload_Checksum=checksum)
    assert await offset_of(http, url) == 0


async def test_method_override_on_post_only(origin: Origin, http: aiohttp.ClientSession) -> None:
    url = await create(http, origin, 11)
    override = {**patching(0), "X-HTTP-Method-Override": "PATCH"}
    async with http.post(url, data=b"hello", headers=override) as response:
        assert checked(response, 204).headers["Upload-Offset"] == "5"
    async with http.get(url, headers=tus(X_HTTP_Method_Override="DELETE")) as response:
        checked(response, 405)
    async with http.post(url, headers=tus(X_HTTP_Method_Override="DELETE")) as response:
        checked(response, 204)
    async with http.head(url, headers=tus()) as response:
        checked(response, 404)


# Who may see what.


async def test_unknown_uploads_are_404(origin: Origin, http: aiohttp.ClientSession) -> None:
    url = origin.url + "0" * 32
    async with http.head(url, headers=tus()) as response:
        checked(response, 404)
        assert "Upload-Offset" not in response.headers
    await patch(http, url, 0, b"x", 404)
    async with http.delete(url, headers=tus()) as response:
        checked(response, 404)


@pytest.mark.parametrize(
    "tail",
    [
        "..%2F..%2Fsecret",
        "%2e%2e",
        "A" * 32,
        "0" * 31,
        "0" * 32 + ".json",
        "0" * 32 + "%00",
        "0" * 32 + "/x",
        "nested/..%2F..%2Fsecret",
    ],
)
async def test_hostile_ids_are_404(origin: Origin, http: aiohttp.ClientSession, tail: str) -> None:
    secret = origin.root.parent / "secret"
    secret.write_bytes(b"outside the staging directory")
    (origin.root / ("0" * 32 + ".json.bin")).write_bytes(b"decoy")
    url = origin.url + tail
    async with http.head(URL(url, encoded=True), headers=tus()) as response:
        checked(response, 404)
    async with http.patch(URL(url, encoded=True), data=b"x", headers=patching(0)) as response:
        checked(response, 404)
    async with http.delete(URL(url, encoded=True), headers=tus()) as response:
        checked(response, 404)
    assert secret.read_bytes() == b"outside the staging directory"


async def test_another_users_upload_does_not_exist(
    origin: Origin, http: aiohttp.ClientSession
) -> None:
    url = await create(http, origin, 11)
    async with http.head(url, headers=tus("bob-token")) as response:
        checked(response, 404)
    await patch(http, url, 0, b"hello", 404, Authorization="Bearer bob-token")
    async with http.delete(url, headers=tus("bob-token")) as response:
        checked(response, 404)
    assert await offset_of(http, url) == 0


# Termination.


async def test_delete_terminates(origin: Origin, http: aiohttp.ClientSession) -> None:
    url = await create(http, origin, 11)
    await patch(http, url, 0, b"hello", 204)
    async with http.delete(url, headers=tus()) as response:
        checked(response, 204)
    async with http.head(url, headers=tus()) as response:
        checked(response, 404)
    await patch(http, url, 5, b" world", 404)
    assert list(origin.root.iterdir()) == []


async def test_delete_of_a_finished_upload_is_403(
    origin: Origin, http: aiohttp.ClientSession
) -> None:
    url = await create(http, origin, 5)
    await patch(http, url, 0, b"hello", 204)
    async with http.delete(url, headers=tus()) as response:
        checked(response, 403)
    assert origin.staging.data_path(upload_id(url)).read_bytes() == b"hello"


# Concurrency, interrupted and stalled bodies.


async def test_busy_upload_is_423(origin: Origin, http: aiohttp.ClientSession) -> None:
    url = await create(http, origin, 100)
    reader, writer = await raw_patch(origin, url, 0, 100, b"a" * 10)
    try:
        await wait_until_claimed(origin, url)
        await patch(http, url, 0, b"b" * 100, 423)
        async with http.delete(url, headers=tus()) as response:
            checked(response, 423)
        assert await offset_of(http, url) == 0  # HEAD is never blocked
        writer.write(b"a" * 90)
        status, fields = await read_status(reader)
        assert (status, fields["upload-offset"]) == (204, "100")
    finally:
        writer.close()
    assert origin.staging.data_path(upload_id(url)).read_bytes() == b"a" * 100


@pytest.mark.parametrize("checksummed", [False, True])
async def test_interrupted_body(
    origin: Origin, http: aiohttp.ClientSession, checksummed: bool
) -> None:
    # More than the server buffers before it writes, so bytes really reach the data file.
    whole = bytes(range(256)) * 12_000
    sent = whole[:1_500_000]
    url = await create(http, origin, 10 + len(whole))
    await patch(http, url, 0, b"x" * 10, 204)
    checksum = base64.b64encode(hashlib.sha1(whole).digest()).decode()
    fields = {"Upload_Checksum": f"sha1 {checksum}"} if checksummed else {}
    _, writer = await raw_patch(origin, url, 10, len(whole), sent, **fields)
    await wait_until_claimed(origin, url)
    writer.close()
    # Without a checksum the server keeps what it read; with one, nothing of that request.
    kept = b"x" * 10 if checksummed else b"x" * 10 + sent
    await wait_for_offset(http, origin, url, len(kept))
    assert origin.staging.data_path(upload_id(url)).read_bytes() == kept


async def test_stalled_body_is_408_and_frees_the_upload(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    origin = Origin(tmp_path / "staging", read_timeout=0.2)
    await origin.start()
    try:
        url = await create(http, origin, 100)
        reader, writer = await raw_patch(origin, url, 0, 100, b"z" * 10)
        try:
            status, fields = await read_status(reader)
            assert (status, fields["tus-resumable"]) == (408, TUS_VERSION)
        finally:
            writer.close()
        await wait_for_offset(http, origin, url, 10)
        await patch(http, url, 10, b"z" * 90, 204)
        assert origin.completed[0].sha256 == hashlib.sha256(b"z" * 100).hexdigest()
    finally:
        await origin.stop()


# Expiration.


async def test_expired_upload_is_410_then_404(origin: Origin, http: aiohttp.ClientSession) -> None:
    head_url = await create(http, origin, 10)
    patch_url = await create(http, origin, 10)
    delete_url = await create(http, origin, 10)
    origin.clock.now = T0 + EXPIRATION - 1
    await patch(http, patch_url, 0, b"ab", 204)
    origin.clock.now = T0 + EXPIRATION
    async with http.head(head_url, headers=tus()) as response:
        checked(response, 410)
    await patch(http, patch_url, 2, b"cd", 410)
    async with http.delete(delete_url, headers=tus()) as response:
        checked(response, 410)
    for url in (head_url, patch_url, delete_url):
        async with http.head(url, headers=tus()) as response:
            checked(response, 404)
    assert list(origin.root.iterdir()) == []


async def test_periodic_sweep_removes_expired_uploads(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    origin = Origin(tmp_path / "staging", sweep_interval=0.05)
    await origin.start()
    try:
        stale = await create(http, origin, 10)
        done = await create(http, origin, 2)
        await patch(http, done, 0, b"ok", 204)
        origin.clock.now = T0 + EXPIRATION
        for _ in range(200):
            if len(origin.staging.uploads()) == 1:
                break
            await asyncio.sleep(0.01)
        [left] = origin.staging.uploads()
        assert left.upload_id == upload_id(done)
        assert not origin.staging.root.joinpath(upload_id(stale) + ".bin").exists()
    finally:
        await origin.stop()


# Completion and hand-off.


async def test_failed_hand_off_is_resumed(
    origin: Origin, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    origin.failures_left = 1
    url = await create(http, origin, 5)
    with caplog.at_level(logging.ERROR, logger="origin.tus"):
        await patch(http, url, 0, b"hello", 204)
    assert "packaging queue unavailable" in caplog.text
    state = origin.staging.get(upload_id(url))
    assert state.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert not state.handed_off
    assert origin.completed == []

    assert await origin.service.resume_pending() == 1
    [completed] = origin.completed
    assert (completed.upload_id, completed.sha256) == (state.upload_id, state.sha256)
    assert origin.staging.get(state.upload_id).handed_off
    assert await origin.service.resume_pending() == 0
    assert len(origin.completed) == 1


async def test_resume_pending_hashes_and_skips_broken_uploads(
    origin: Origin, caplog: pytest.LogCaptureFixture
) -> None:
    # As a crash between the last commit and the hashing leaves them: finished, no SHA-256.
    ids = []
    for data in (b"lost", b"fine"):
        state = origin.staging.create(
            user_id="alice", length=4, metadata={}, created_at=T0, expires_at=T0 + EXPIRATION
        )
        with origin.staging.claim(state.upload_id) as claimed:
            writer = claimed.begin_append(0)
            writer.write(data)
            writer.commit()
        ids.append(state.upload_id)
    origin.staging.data_path(ids[0]).unlink()

    with caplog.at_level(logging.ERROR, logger="origin.tus"):
        assert await origin.service.resume_pending() == 1
    assert f"hand-off of upload {ids[0]} failed" in caplog.text
    [completed] = origin.completed
    assert (completed.upload_id, completed.sha256) == (ids[1], hashlib.sha256(b"fine").hexdigest())


async def test_hand_off_resumes_after_a_restart(
    origin: Origin, http: aiohttp.ClientSession
) -> None:
    origin.failures_left = 1
    url = await create(http, origin, 5)
    await patch(http, url, 0, b"hello", 204)
    await origin.restart()  # the new service's first maintenance round offers it again
    for _ in range(200):
        if origin.completed:
            break
        await asyncio.sleep(0.01)
    assert [c.upload_id for c in origin.completed] == [upload_id(url)]


async def test_discard_after_hand_off(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    origin = Origin(tmp_path / "staging", discard_after_hand_off=True)
    await origin.start()
    try:
        url = await create(http, origin, 5)
        await patch(http, url, 0, b"hello", 204)
        [completed] = origin.completed
        assert origin.contents[completed.upload_id] == b"hello"
        assert not completed.data_path.exists()
        state = origin.staging.get(completed.upload_id)
        assert state.discarded and state.handed_off
        async with http.head(url, headers=tus()) as response:
            assert checked(response, 200).headers["Upload-Offset"] == "5"
    finally:
        await origin.stop()


# A real tus client, interrupted and resumed across an origin restart.


async def test_tuspy_resumes_across_a_restart(origin: Origin) -> None:
    source = bytes(range(251)) * (3 * 4177)  # about 3 MiB, no period aligned with the chunks
    client = TusClient(origin.url, headers={"Authorization": "Bearer alice-token"})
    chunk = 256 * 1024
    uploader = client.uploader(
        file_stream=io.BytesIO(source),
        chunk_size=chunk,
        metadata={"filename": "clip.mp4"},
        upload_checksum=True,
    )
    for _ in range(3):
        await asyncio.to_thread(uploader.upload_chunk)
    assert uploader.url is not None
    assert uploader.offset == 3 * chunk

    await origin.restart()
    assert origin.staging.get(upload_id(uploader.url)).offset == 3 * chunk
    resumed = await asyncio.to_thread(
        client.uploader, file_stream=io.BytesIO(source), url=uploader.url, chunk_size=chunk
    )
    assert resumed.offset == 3 * chunk  # from the HEAD of the new server
    await asyncio.to_thread(resumed.upload)

    [completed] = origin.completed
    assert completed.sha256 == hashlib.sha256(source).hexdigest()
    assert completed.length == len(source)
    assert completed.metadata == {"filename": "clip.mp4"}
    assert origin.contents[completed.upload_id] == source


# The metadata codec.


def test_metadata_examples() -> None:
    assert parse_metadata("") == {}
    assert parse_metadata("a YQ==, b,c ") == {"a": "a", "b": None, "c": ""}
    assert encode_metadata({"a": "a", "b": None, "c": ""}) == "a YQ==,b,c "
    for bad in ("a,a", "a YQ==,a", "a YQ", "a  YQ==", ",a", "a YQ== b", "é YQ==", "a 6Q=="):
        with pytest.raises(MetadataError):
            parse_metadata(bad)
    with pytest.raises(MetadataError):
        encode_metadata({"bad key": "x"})


_KEYS = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","), min_size=1
)


@given(st.dictionaries(_KEYS, st.none() | st.text(), max_size=8))
def test_metadata_round_trip(metadata: dict[str, str | None]) -> None:
    header = encode_metadata(metadata)
    if len(header.encode()) <= MAX_METADATA_BYTES:
        assert parse_metadata(header) == metadata
    else:
        with pytest.raises(MetadataError):
            parse_metadata(header)


@given(st.text() | st.binary().map(lambda raw: raw.decode("latin-1")))
def test_metadata_garbage_only_raises_metadata_error(header: str) -> None:
    try:
        parsed = parse_metadata(header)
    except MetadataError:
        return
    assert parse_metadata(encode_metadata(parsed)) == parsed
