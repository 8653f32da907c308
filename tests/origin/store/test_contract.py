"""The store contract, run against every backend: the filesystem, and S3 on a real SeaweedFS.

Whatever a test here asserts, both backends do identically; backend-only behaviour (symlinks,
credentials, multipart ETags) lives in test_fs.py and test_s3.py.
"""

import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from origin.store import ContentStore, FilesystemStore, InvalidKey, ObjectNotFound
from origin.store.s3 import MULTIPART_CHUNKSIZE, MULTIPART_THRESHOLD
from tests.support import USES_SEAWEEDFS

BACKENDS = ["fs", pytest.param("s3", marks=USES_SEAWEEDFS)]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ContentStore:
    if request.param == "fs":
        return FilesystemStore(tmp_path / "store")
    s3_store: ContentStore = request.getfixturevalue("s3_store")
    return s3_store


# Every byte value at a position that identifies it, so a shifted range cannot pass.
DATA = bytes(range(256)) * 4

INVALID_KEYS = [
    "",
    "/etc/passwd",
    "../outside",
    "videos/../../outside",
    "videos/./v1",
    ".",
    "..",
    ".hidden",
    "videos//v1",
    "videos/",
    "videos\\v1",
    "..\\outside",
    "videos/v1\x00.m3u8",
    "%2e%2e/outside",
    "my video",
    "vidéo",
    "x" * 129,
    "/".join(["x"] * 257),
]
INVALID_PREFIXES = ["videos", "/videos/", "../", "videos//", "videos/../", ".hidden/", "a\\b/"]


def test_put_then_stat_read_exists(store: ContentStore) -> None:
    info = store.put_bytes("videos/v1/master.m3u8", b"#EXTM3U\n")
    assert (info.key, info.size) == ("videos/v1/master.m3u8", 8)
    assert store.stat("videos/v1/master.m3u8") == info
    assert store.read("videos/v1/master.m3u8") == b"#EXTM3U\n"
    assert store.exists("videos/v1/master.m3u8")


def test_etag_is_strong_quoted_and_stable(store: ContentStore) -> None:
    info = store.put_bytes("k", b"content")
    assert re.fullmatch(r'"[\x21\x23-\x7e]+"', info.etag), info.etag  # quoted, no W/ prefix
    assert store.stat("k").etag == info.etag == store.stat("k").etag


def test_last_modified_is_the_time_of_the_write(store: ContentStore) -> None:
    before = time.time()
    info = store.put_bytes("k", b"content")
    # S3 keeps whole seconds, so the write may appear up to a second early.
    assert before - 1 <= info.last_modified <= time.time()


@pytest.mark.parametrize(
    ("start", "length", "expected"),
    [
        pytest.param(0, None, DATA, id="whole"),
        pytest.param(0, 1, DATA[:1], id="first-byte"),
        pytest.param(10, 100, DATA[10:110], id="middle"),
        pytest.param(0, len(DATA), DATA, id="exactly-all"),
        pytest.param(1000, None, DATA[1000:], id="tail"),
        pytest.param(1000, 24, DATA[1000:], id="up-to-the-end"),
        pytest.param(1023, 1, DATA[1023:], id="last-byte"),
        pytest.param(17, 0, b"", id="zero-length"),
        pytest.param(1000, 500, DATA[1000:], id="runs-past-the-end"),
        pytest.param(0, 5000, DATA, id="longer-than-the-object"),
        pytest.param(len(DATA), None, b"", id="at-the-end"),
        pytest.param(len(DATA), 10, b"", id="at-the-end-with-length"),
        pytest.param(5000, None, b"", id="past-the-end"),
        pytest.param(5000, 1, b"", id="past-the-end-with-length"),
    ],
)
def test_read_returns_the_requested_range(
    store: ContentStore, start: int, length: int | None, expected: bytes
) -> None:
    store.put_bytes("videos/v1/seg_00001.m4s", DATA)
    assert store.read("videos/v1/seg_00001.m4s", start, length) == expected


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(start=st.integers(0, 1100), length=st.none() | st.integers(0, 1100))
def test_any_range_reads_the_same_slice(
    store: ContentStore, start: int, length: int | None
) -> None:
    if not store.exists("data"):
        store.put_bytes("data", DATA)
    end = None if length is None else start + length
    assert store.read("data", start, length) == DATA[start:end]


@pytest.mark.parametrize(("start", "length"), [(-1, None), (-1, 5), (0, -1)])
def test_negative_ranges_are_refused(store: ContentStore, start: int, length: int | None) -> None:
    store.put_bytes("k", DATA)
    with pytest.raises(ValueError, match="must be >= 0"):
        store.read("k", start, length)


def test_overwrite_replaces_content_size_and_etag(store: ContentStore) -> None:
    first = store.put_bytes("videos/v1/master.m3u8", b"first version")
    second = store.put_bytes("videos/v1/master.m3u8", b"2nd")
    assert store.read("videos/v1/master.m3u8") == b"2nd"
    assert store.stat("videos/v1/master.m3u8") == second
    assert second.size == 3
    assert second.etag != first.etag


def test_delete_removes_the_object_and_is_idempotent(store: ContentStore) -> None:
    store.put_bytes("videos/v1/seg_00001.m4s", b"segment")
    store.delete("videos/v1/seg_00001.m4s")
    assert not store.exists("videos/v1/seg_00001.m4s")
    with pytest.raises(ObjectNotFound):
        store.stat("videos/v1/seg_00001.m4s")
    with pytest.raises(ObjectNotFound):
        store.read("videos/v1/seg_00001.m4s")
    assert list(store.list()) == []
    store.delete("videos/v1/seg_00001.m4s")
    store.delete("never/stored")


def test_missing_objects_raise_object_not_found(store: ContentStore) -> None:
    assert not store.exists("videos/none/master.m3u8")
    with pytest.raises(ObjectNotFound):
        store.stat("videos/none/master.m3u8")
    with pytest.raises(ObjectNotFound):
        store.read("videos/none/master.m3u8")
    with pytest.raises(ObjectNotFound):
        store.read("videos/none/master.m3u8", 10, 10)
    with pytest.raises(ObjectNotFound):
        store.read("videos/none/master.m3u8", 0, 0)  # nothing to read, but still missing


def test_a_prefix_of_keys_is_not_an_object(store: ContentStore) -> None:
    store.put_bytes("videos/v1/seg_00001.m4s", b"segment")
    for prefix in ("videos", "videos/v1"):
        assert not store.exists(prefix)
        with pytest.raises(ObjectNotFound):
            store.stat(prefix)
        with pytest.raises(ObjectNotFound):
            store.read(prefix)
        store.delete(prefix)
    assert store.read("videos/v1/seg_00001.m4s") == b"segment"


def test_a_deleted_key_can_become_a_prefix_and_back(store: ContentStore) -> None:
    store.put_bytes("a/b/c", b"1")
    store.delete("a/b/c")
    store.put_bytes("a/b", b"2")
    store.delete("a/b")
    store.put_bytes("a/b/c", b"3")
    assert list(store.list()) == ["a/b/c"]
    assert store.read("a/b/c") == b"3"


def test_list_is_lexicographic_and_filtered_by_prefix(store: ContentStore) -> None:
    # "-" and "." sort before "/": a directory-by-directory walk would get these wrong.
    keys = [
        "a-c",
        "a.d",
        "a/a/z",
        "a/b",
        "a0",
        "ab",
        "videos/v1/master.m3u8",
        "videos/v1/r360/init.mp4",
        "videos/v10/master.m3u8",
        "videos/v1x",
    ]
    for key in reversed(keys):
        store.put_bytes(key, key.encode())
    assert list(store.list()) == keys
    assert list(store.list("a/")) == ["a/a/z", "a/b"]
    assert list(store.list("videos/v1/")) == ["videos/v1/master.m3u8", "videos/v1/r360/init.mp4"]
    assert list(store.list("videos/v1/r360/")) == ["videos/v1/r360/init.mp4"]
    assert list(store.list("nothing/")) == []
    assert list(store.list("a/b/")) == []  # an object, not a prefix


@pytest.mark.parametrize(
    "key",
    [
        "A",
        "0",
        "a.b-c_d",
        "x" * 128,
        "/".join(["y" * 127] * 4),  # 511 characters
        "/".join(["z"] * 256),  # 256 levels, 511 characters
    ],
)
def test_unusual_valid_keys_round_trip(store: ContentStore, key: str) -> None:
    store.put_bytes(key, b"payload")
    assert store.read(key) == b"payload"
    assert list(store.list()) == [key]
    store.delete(key)
    assert list(store.list()) == []


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_refused_by_every_operation(
    store: ContentStore, key: str, tmp_path: Path
) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload")
    operations: list[Callable[[], object]] = [
        lambda: store.stat(key),
        lambda: store.read(key),
        lambda: store.read(key, 1, 2),
        lambda: store.exists(key),
        lambda: store.put_bytes(key, b"payload"),
        lambda: store.put_file(key, source),
        lambda: store.delete(key),
    ]
    for operation in operations:
        with pytest.raises(InvalidKey):
            operation()
    assert list(store.list()) == []


@pytest.mark.parametrize("prefix", INVALID_PREFIXES)
def test_invalid_prefixes_are_refused_when_listing_is_called(
    store: ContentStore, prefix: str
) -> None:
    with pytest.raises(InvalidKey):
        store.list(prefix)  # at the call: not deferred to the first iteration


def test_empty_objects(store: ContentStore, tmp_path: Path) -> None:
    info = store.put_bytes("empty", b"")
    assert info.size == 0
    assert store.stat("empty") == info
    assert store.read("empty") == b""
    assert store.read("empty", 0, 10) == b""
    assert store.read("empty", 5) == b""
    assert store.read("empty", 0, 0) == b""
    empty_file = tmp_path / "empty.bin"
    empty_file.write_bytes(b"")
    assert store.put_file("empty-file", empty_file).size == 0
    assert list(store.list()) == ["empty", "empty-file"]


def test_put_file_stores_a_file_larger_than_the_multipart_threshold(
    store: ContentStore, tmp_path: Path
) -> None:
    data = os.urandom(MULTIPART_THRESHOLD + 1024 * 1024 + 17)  # two parts on S3
    source = tmp_path / "source.mp4"
    source.write_bytes(data)
    info = store.put_file("videos/big/source.mp4", source)
    assert info.size == len(data)
    assert store.stat("videos/big/source.mp4") == info
    across_parts = slice(MULTIPART_CHUNKSIZE - 10, MULTIPART_CHUNKSIZE + 10)
    assert store.read("videos/big/source.mp4", across_parts.start, 20) == data[across_parts]
    assert store.read("videos/big/source.mp4") == data


def test_put_file_of_a_missing_file_stores_nothing(store: ContentStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.put_file("videos/v1/seg_00001.m4s", tmp_path / "missing.m4s")
    assert list(store.list()) == []


def test_readers_see_the_old_or_the_new_object_never_a_mix(store: ContentStore) -> None:
    versions = [b"a" * 200_000, b"b" * 300_000]
    store.put_bytes("videos/v1/master.m3u8", versions[0])
    seen: list[bytes] = []
    failures: list[Exception] = []
    writing = threading.Event()
    writing.set()

    def read_continuously() -> None:
        try:
            while writing.is_set():
                seen.append(store.read("videos/v1/master.m3u8"))
        except Exception as error:  # e.g. ObjectNotFound in the middle of a replace
            failures.append(error)

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for round_number in range(20):
            store.put_bytes("videos/v1/master.m3u8", versions[round_number % 2])
    finally:
        writing.clear()
        reader.join()
    assert failures == []
    assert seen
    assert all(data in versions for data in seen)
