"""The origin HTTP app over a real FilesystemStore: status codes, headers and path safety."""

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from core.config import OriginConfig
from core.http.conditional import http_date
from origin.app import make_origin_app
from origin.store.base import ObjectInfo, StoreError
from origin.store.fs import FilesystemStore

# Distinct, non-default lifetimes, so the tests show that the configuration is what is used.
CONFIG = OriginConfig(playlist_max_age=7, segment_max_age=86_400)
SEGMENT = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable
PLAYLIST = b"#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n"
SECRET = b"TOP-SECRET-b0a7c1e9: this file lives outside the store"

SEGMENT_PATH = "/v/abc/720p/seg_00001.m4s"
SEGMENT_KEY = "videos/abc/720p/seg_00001.m4s"
PLAYLIST_PATH = "/v/abc/720p/index.m3u8"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def store(tmp_path: Path, secret_file: Path) -> FilesystemStore:
    store = FilesystemStore(tmp_path / "store")
    store.put_bytes(SEGMENT_KEY, SEGMENT)
    store.put_bytes("videos/abc/720p/index.m3u8", PLAYLIST)
    store.put_bytes("videos/abc/720p/init.mp4", b"ftyp-init")
    store.put_bytes("videos/abc/poster.jpg", b"\xff\xd8\xff-jpeg")
    store.put_bytes("videos/abc/empty.m4s", b"")
    return store


@pytest.fixture
async def client(store: FilesystemStore) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_origin_app(store, CONFIG))) as client:
        yield client


async def raw_request(
    client: TestClient[web.Request, web.Application], target: bytes, method: bytes = b"GET"
) -> tuple[int, bytes]:
    """Send a request target byte for byte (no client-side normalisation); status and bytes."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            method + b" " + target + b" HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line = response.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), response


def representation_headers(response: ClientResponse) -> dict[str, str]:
    """The response's fields (names lowercased) except those that vary with each response and
    the CORS fields every media response carries (tested on their own)."""
    return {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower() not in ("date", "server", "connection", "keep-alive")
        and not name.lower().startswith("access-control-")
    }


# --- health ------------------------------------------------------------------------------------


async def test_healthz(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "kind": "origin"}
    assert response.headers["Cache-Control"] == "no-store"


# --- 200 and HEAD ------------------------------------------------------------------------------


async def test_get_segment(
    client: TestClient[web.Request, web.Application], store: FilesystemStore
) -> None:
    info = store.stat(SEGMENT_KEY)
    response = await client.get(SEGMENT_PATH)
    assert response.status == 200
    assert await response.read() == SEGMENT
    assert representation_headers(response) == {
        "content-type": "video/iso.segment",
        "content-length": str(len(SEGMENT)),
        "etag": info.etag,
        "last-modified": http_date(info.last_modified),
        "cache-control": "public, max-age=86400, immutable",
        "accept-ranges": "bytes",
    }
    assert "Date" in response.headers
    assert "Vary" not in response.headers


@pytest.mark.parametrize(
    ("path", "content_type", "cache_control"),
    [
        (PLAYLIST_PATH, "application/vnd.apple.mpegurl", "public, max-age=7"),
        ("/v/abc/720p/init.mp4", "video/mp4", "public, max-age=86400, immutable"),
        ("/v/abc/poster.jpg", "image/jpeg", "public, max-age=86400, immutable"),
    ],
)
async def test_types_and_lifetimes_by_kind(
    client: TestClient[web.Request, web.Application],
    path: str,
    content_type: str,
    cache_control: str,
) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Cache-Control"] == cache_control


async def test_empty_object(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/v/abc/empty.m4s", headers={"Range": "bytes=0-"})
    assert response.status == 200
    assert response.headers["Content-Length"] == "0"
    assert await response.read() == b""


async def test_query_string_is_ignored(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get(SEGMENT_PATH, params={"token": "abc", "expires": "1"})
    assert response.status == 200
    assert await response.read() == SEGMENT


async def test_head_has_the_get_headers_and_no_body(
    client: TestClient[web.Request, web.Application],
) -> None:
    get = await client.get(SEGMENT_PATH)
    head = await client.head(SEGMENT_PATH)
    assert head.status == 200
    assert representation_headers(head) == representation_headers(get)
    assert await head.read() == b""


async def test_head_sends_no_body_on_the_wire(
    client: TestClient[web.Request, web.Application],
) -> None:
    # The client library would discard a body after HEAD; the raw bytes show there is none.
    status, response = await raw_request(client, SEGMENT_PATH.encode(), b"HEAD")
    assert status == 200
    assert response.endswith(b"\r\n\r\n")
    assert f"Content-Length: {len(SEGMENT)}\r\n".encode() in response


async def test_head_ignores_range(client: TestClient[web.Request, web.Application]) -> None:
    # RFC 9110 section 14.2: range handling is defined for GET only.
    response = await client.head(SEGMENT_PATH, headers={"Range": "bytes=0-9"})
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(SEGMENT))
    assert "Content-Range" not in response.headers


# --- ranges ------------------------------------------------------------------------------------


class RecordingStore(FilesystemStore):
    """The real store, noting the (start, length) of every read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[tuple[int, int | None]] = []

    def read(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        self.reads.append((start, length))
        return super().read(key, start, length)


@pytest.mark.parametrize(
    ("range_field", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=1000-", 1000, 1023),
        ("bytes=-24", 1000, 1023),
        ("bytes=1000-999999", 1000, 1023),
        ("bytes=0-9,10-19", 0, 19),  # contiguous ranges are coalesced into one part
    ],
)
async def test_range_is_206_and_reads_only_the_range(
    tmp_path: Path, range_field: str, start: int, end: int
) -> None:
    store = RecordingStore(tmp_path / "recording")
    store.put_bytes(SEGMENT_KEY, SEGMENT)
    async with TestClient(TestServer(make_origin_app(store, CONFIG))) as client:
        response = await client.get(SEGMENT_PATH, headers={"Range": range_field})
        assert response.status == 206
        assert await response.read() == SEGMENT[start : end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(SEGMENT)}"
    assert response.headers["Content-Length"] == str(end - start + 1)
    assert response.headers["Content-Type"] == "video/iso.segment"
    assert response.headers["ETag"] == store.stat(SEGMENT_KEY).etag
    assert response.headers["Cache-Control"] == "public, max-age=86400, immutable"
    assert store.reads == [(start, end - start + 1)]


@pytest.mark.parametrize("range_field", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
async def test_unsatisfiable_range_is_416(
    client: TestClient[web.Request, web.Application], range_field: str
) -> None:
    response = await client.get(SEGMENT_PATH, headers={"Range": range_field})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(SEGMENT)}"
    assert "Cache-Control" not in response.headers
    assert SEGMENT not in await response.read()


@pytest.mark.parametrize(
    "range_field",
    [
        "bytes=abc",
        "bytes=20-10",
        "bytes=0-1;2-3",
        "items=0-9",
        "bytes=0-9,20-29",  # disjoint ranges: the documented answer is the whole object
        "bytes=" + ",".join(["0-0"] * 100),  # too many ranges
    ],
)
async def test_ignored_range_is_200_full(
    client: TestClient[web.Request, web.Application], range_field: str
) -> None:
    response = await client.get(SEGMENT_PATH, headers={"Range": range_field})
    assert response.status == 200
    assert "Content-Range" not in response.headers
    assert await response.read() == SEGMENT


async def test_range_sent_on_two_lines_is_ignored(
    client: TestClient[web.Request, web.Application],
) -> None:
    # Range is a single ranges-specifier; two field lines combine into an invalid one.
    response = await client.get(
        SEGMENT_PATH, headers=[("Range", "bytes=0-9"), ("Range", "bytes=10-19")]
    )
    assert response.status == 200
    assert await response.read() == SEGMENT


# --- conditional requests ----------------------------------------------------------------------


async def test_if_none_match_is_304(client: TestClient[web.Request, web.Application]) -> None:
    etag = (await client.get(SEGMENT_PATH)).headers["ETag"]
    response = await client.get(SEGMENT_PATH, headers={"If-None-Match": etag})
    assert response.status == 304
    assert await response.read() == b""
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-Control"] == "public, max-age=86400, immutable"
    assert "Last-Modified" in response.headers
    assert "Content-Range" not in response.headers


async def test_304_sends_no_body_on_the_wire(
    client: TestClient[web.Request, web.Application], store: FilesystemStore
) -> None:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    etag = store.stat(SEGMENT_KEY).etag
    writer.write(
        f"GET {SEGMENT_PATH} HTTP/1.1\r\nHost: o\r\nIf-None-Match: {etag}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    response = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    await writer.wait_closed()
    assert response.startswith(b"HTTP/1.1 304 ")
    assert response.endswith(b"\r\n\r\n")


async def test_if_none_match_on_head_is_304(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.head(PLAYLIST_PATH, headers={"If-None-Match": "*"})
    assert response.status == 304
    assert response.headers["Cache-Control"] == "public, max-age=7"


async def test_if_none_match_wins_over_range(
    client: TestClient[web.Request, web.Application],
) -> None:
    etag = (await client.get(SEGMENT_PATH)).headers["ETag"]
    headers = {"If-None-Match": etag, "Range": "bytes=0-9"}
    assert (await client.get(SEGMENT_PATH, headers=headers)).status == 304


async def test_stale_if_none_match_is_200(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get(SEGMENT_PATH, headers={"If-None-Match": '"old", W/"older"'})
    assert response.status == 200
    assert await response.read() == SEGMENT


async def test_if_modified_since(
    client: TestClient[web.Request, web.Application], store: FilesystemStore
) -> None:
    modified = store.stat(SEGMENT_KEY).last_modified
    same = await client.get(SEGMENT_PATH, headers={"If-Modified-Since": http_date(modified)})
    assert same.status == 304
    earlier = http_date(modified - 60)
    changed = await client.get(SEGMENT_PATH, headers={"If-Modified-Since": earlier})
    assert changed.status == 200
    assert await changed.read() == SEGMENT


@pytest.mark.parametrize(
    "headers",
    [
        {"If-Match": '"some-other-version"'},
        {"If-Match": "not-even-an-etag"},
        {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
    ],
)
async def test_failed_precondition_is_412(
    client: TestClient[web.Request, web.Application], headers: dict[str, str]
) -> None:
    response = await client.get(SEGMENT_PATH, headers=headers)
    assert response.status == 412
    assert SEGMENT not in await response.read()


async def test_matching_if_match_is_served(
    client: TestClient[web.Request, web.Application],
) -> None:
    etag = (await client.get(SEGMENT_PATH)).headers["ETag"]
    response = await client.get(SEGMENT_PATH, headers={"If-Match": f'"x", {etag}'})
    assert response.status == 200


async def test_if_range(
    client: TestClient[web.Request, web.Application], store: FilesystemStore
) -> None:
    info = store.stat(SEGMENT_KEY)
    for validator in (info.etag, http_date(info.last_modified)):
        current = await client.get(
            SEGMENT_PATH, headers={"Range": "bytes=0-9", "If-Range": validator}
        )
        assert current.status == 206
        assert await current.read() == SEGMENT[:10]
    stale = await client.get(SEGMENT_PATH, headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status == 200
    assert await stale.read() == SEGMENT


async def test_conditionals_do_not_hide_a_missing_object(
    client: TestClient[web.Request, web.Application],
) -> None:
    # RFC 9110 section 13.2.1: preconditions are not evaluated when the answer would be 404.
    response = await client.get("/v/abc/720p/nope.m4s", headers={"If-Match": "*"})
    assert response.status == 404


# --- 404 and 405 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/v/nosuchvideo/master.m3u8", "/v/abc/720p/seg_99999.m4s", "/v/abc", "/v/abc/720p"],
)
async def test_unknown_object_is_404(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    response = await client.get(path)
    assert response.status == 404
    assert await response.text() == "no such object\n"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods_are_405(
    client: TestClient[web.Request, web.Application], store: FilesystemStore, method: str
) -> None:
    response = await client.request(method, SEGMENT_PATH, data=b"overwrite")
    assert response.status == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert store.read(SEGMENT_KEY) == SEGMENT


# --- path safety -------------------------------------------------------------------------------

TRAVERSAL_TARGETS = [
    b"/v/../secret",
    b"/v/%2e%2e/secret",
    b"/v/%2E%2E%2Fsecret",
    b"/v/a/%00",
    b"/v//etc/passwd",
    b"/v/a\\b",
    b"/v/abc/../../secret",
    b"/v/abc/720p/../../../secret",
    b"/v/.%2e/secret",
    b"/v/%2e./secret",
    b"/v/abc/..%2f..%2fsecret",
    b"/v/%2e%2e%5c%2e%2e%5csecret",
    b"/v/..\\..\\secret",
    b"/v/abc/720p/seg_00001.m4s%00.jpg",
    b"/v/./abc/720p/seg_00001.m4s",
    b"/../secret",
    b"/v/%252e%252e/secret",  # double encoding decodes once, to a '%' the key alphabet refuses
    b"/v/abc/%2e%2e/%2e%2e/secret",
    b"/v/abc/seg\x00.m4s",
    b"/v/abc/.hidden",
    b"/v/%20/secret",
]


@pytest.mark.parametrize("target", TRAVERSAL_TARGETS, ids=lambda target: target.decode("latin-1"))
async def test_traversal_attempts_are_400(
    client: TestClient[web.Request, web.Application], secret_file: Path, target: bytes
) -> None:
    assert secret_file.read_bytes() == SECRET  # the secret is there to be leaked
    status, response = await raw_request(client, target)
    assert status == 400
    assert SECRET not in response


async def test_absolute_path_to_the_secret_is_400(
    client: TestClient[web.Request, web.Application], secret_file: Path
) -> None:
    for target in (b"/v/" + bytes(secret_file), b"/v//" + bytes(secret_file).lstrip(b"/")):
        status, response = await raw_request(client, target)
        assert status == 400
        assert SECRET not in response


async def test_raw_request_helper_serves_a_good_path(
    client: TestClient[web.Request, web.Application],
) -> None:
    # The control for the traversal tests: the same helper does get content for a safe path.
    status, response = await raw_request(client, SEGMENT_PATH.encode())
    assert status == 200
    assert response.endswith(SEGMENT)


async def test_traversal_through_the_client_with_encoded_urls(
    client: TestClient[web.Request, web.Application],
) -> None:
    for path in ("/v/%2e%2e/secret", "/v/%2E%2E%2Fsecret", "/v/abc/%2e%2e/%2e%2e/secret"):
        response = await client.get(URL(path, encoded=True))
        assert response.status == 400
        assert SECRET not in await response.read()


@pytest.fixture
def escaping_symlinks(store: FilesystemStore, tmp_path: Path, secret_file: Path) -> list[str]:
    """Symlinks inside the store that lead out of it; the request paths that name them."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "seg_00001.m4s").write_bytes(SECRET)
    video = tmp_path / "store" / "videos" / "abc"
    (video / "leak.m4s").symlink_to(secret_file)
    (video / "720p" / "leak.m3u8").symlink_to("../../../../secret")
    (tmp_path / "store" / "videos" / "evil").symlink_to(outside, target_is_directory=True)
    return ["/v/abc/leak.m4s", "/v/abc/720p/leak.m3u8", "/v/evil/seg_00001.m4s"]


async def test_symlinks_out_of_the_store_are_never_followed(
    client: TestClient[web.Request, web.Application], escaping_symlinks: list[str]
) -> None:
    for path in escaping_symlinks:
        for method, headers in (
            ("GET", {}),
            ("HEAD", {}),
            ("GET", {"Range": "bytes=0-"}),
            ("GET", {"If-None-Match": '"x"'}),
        ):
            response = await client.request(method, path, headers=headers)
            assert response.status in (400, 404), (method, path, response.status)
            assert SECRET not in await response.read()
            # Not even the secret's size may leak through a Content-Length.
            assert response.headers.get("Content-Length") != str(len(SECRET))


@pytest.mark.parametrize(
    "path",
    ["/v/abc/seg%20x.m4s", "/v/abc/-x.m4s", "/v/abc/seg%3Bx.m4s", "/v/" + "a" * 600],
)
async def test_invalid_key_is_400(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    response = await client.get(URL(path, encoded=True))
    assert response.status == 400
    assert (await response.text()).startswith("bad object name:")


# --- races and logging -------------------------------------------------------------------------


class ReplacedDuringReadStore(FilesystemStore):
    """The real store, with a writer that replaces the object between stat and read."""

    def __init__(self, root: Path, replacements: list[bytes]) -> None:
        super().__init__(root)
        self.replacements = replacements

    def read(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        if self.replacements:
            self.put_bytes(key, self.replacements.pop(0))
        return super().read(key, start, length)


async def test_object_replaced_during_a_read_is_read_again(tmp_path: Path) -> None:
    store = ReplacedDuringReadStore(tmp_path / "racing", [b"a longer new version"])
    info: ObjectInfo = store.put_bytes(SEGMENT_KEY, b"old")
    async with TestClient(TestServer(make_origin_app(store, CONFIG))) as client:
        response = await client.get(SEGMENT_PATH)
        assert response.status == 200
        assert await response.read() == b"a longer new version"
    assert response.headers["Content-Length"] == str(len(b"a longer new version"))
    assert response.headers["ETag"] != info.etag


async def test_object_that_keeps_changing_is_503(tmp_path: Path) -> None:
    versions = [b"x" * size for size in range(2, 12)]
    store = ReplacedDuringReadStore(tmp_path / "racing", versions)
    store.put_bytes(SEGMENT_KEY, b"y")
    async with TestClient(TestServer(make_origin_app(store, CONFIG))) as client:
        response = await client.get(SEGMENT_PATH)
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"


class UnreachableStore(FilesystemStore):
    """The real store, with its backing storage gone away (as an S3 endpoint can)."""

    def stat(self, key: str) -> ObjectInfo:
        raise StoreError("cannot reach http://10.1.2.3:9000 bucket internal-bucket")


async def test_unavailable_store_is_503_without_its_location(tmp_path: Path) -> None:
    store = UnreachableStore(tmp_path / "gone")
    async with TestClient(TestServer(make_origin_app(store, CONFIG))) as client:
        response = await client.get(SEGMENT_PATH)
        assert response.status == 503
        body = await response.text()
    assert body == "content store unavailable\n"
    assert response.headers["Retry-After"] == "1"


async def test_at_most_one_debug_line_per_request(
    client: TestClient[web.Request, web.Application], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="origin.app")
    await client.get(SEGMENT_PATH)
    await client.get("/v/nosuchvideo/master.m3u8")
    await raw_request(client, b"/v/../secret")
    records = [record for record in caplog.records if record.name == "origin.app"]
    assert len(records) == 3
    assert all(record.levelno == logging.DEBUG for record in records)


async def test_media_responses_allow_any_page_to_read_them(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "store")
    store.put_bytes("videos/cors/360p/index.m3u8", b"#EXTM3U\n")
    async with TestClient(TestServer(make_origin_app(store, OriginConfig()))) as client:
        for path in ("/v/cors/360p/index.m3u8", "/v/cors/missing.m4s"):
            response = await client.get(path, headers={"Origin": "https://app.example"})
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert "Cache-Status" in response.headers["Access-Control-Expose-Headers"]
        health = await client.get("/healthz")
        assert "Access-Control-Allow-Origin" not in health.headers
