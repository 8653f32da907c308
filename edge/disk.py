"""The disk tier's files: one self-describing record per stored object, written atomically.

A record is a fixed header, the object's metadata (JSON: the cache key, the response status and
header fields, timing), then the body:

    magic "SHL1" | u32 metadata length | u64 body length | 32-byte SHA-256 of the body
    | metadata | body

Records are written to a temporary file in the same directory, fsynced and renamed into place,
so a reader (this worker or another one sharing the directory) sees either no record or a whole
one. A record whose file is shorter or longer than its header says (truncated, or appended to)
is dropped when opened; a full scan (at start, to rebuild the index) also checks each body's
SHA-256, which catches corruption that keeps the size. Serving uses the file descriptor and the
body's offset, so the shell can `sendfile` without copying the body through Python.

File names are the SHA-256 of the object id, sharded by its first two hex digits: object ids
are arbitrary text (they contain the request target), file names must not be.
"""

import contextlib
import hashlib
import json
import logging
import os
import secrets
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAGIC = b"SHL1"
_HEADER = struct.Struct(">4sIQ32s")
MAX_METADATA_BYTES = 1024 * 1024
_TEMP_PREFIX = ".tmp-"
ABANDONED_TEMP_SECONDS = 600.0
"""A temp file untouched this long is a write that died with its process."""
_SUFFIX = ".rec"


class CorruptRecord(Exception):
    """The record is truncated, oversized, malformed or fails its checksum; it was removed."""


@dataclass(frozen=True)
class RecordInfo:
    object_id: str
    metadata: dict[str, Any]
    body_offset: int
    body_length: int
    path: Path


@dataclass
class OpenRecord:
    """An open record: `fd` stays valid (and the bytes stable) even if the file is replaced.

    A disk hit's answer carries one to the shell, which sends the body from it (`sendfile`)
    and closes it; one dropped unsent (its client left first) is closed when collected."""

    info: RecordInfo
    fd: int

    def read_body(self) -> bytes:
        return os.pread(self.fd, self.info.body_length, self.info.body_offset)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


class DiskTier:
    """Record files under `root`; safe to share between worker processes."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root

    def path_of(self, object_id: str) -> Path:
        digest = hashlib.sha256(object_id.encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}{_SUFFIX}"

    def write(self, object_id: str, metadata: dict[str, Any], body: bytes) -> RecordInfo:
        """Store a record atomically (replacing any previous one) and return where it lies."""
        meta = json.dumps({**metadata, "object_id": object_id}, separators=(",", ":")).encode()
        if len(meta) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata of {object_id!r} is larger than {MAX_METADATA_BYTES} bytes")
        header = _HEADER.pack(MAGIC, len(meta), len(body), hashlib.sha256(body).digest())
        final = self.path_of(object_id)
        final.parent.mkdir(exist_ok=True)
        temporary = final.with_name(f"{_TEMP_PREFIX}{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            with open(fd, "wb", closefd=True) as file:
                file.write(header)
                file.write(meta)
                file.write(body)
                file.flush()
                os.fsync(file.fileno())
            temporary.replace(final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        _fsync_directory(final.parent)
        return RecordInfo(object_id, metadata, _HEADER.size + len(meta), len(body), final)

    def open(self, object_id: str, *, verify: bool = False) -> OpenRecord | None:
        """The record of `object_id`, or None if there is none.

        A record that is not whole is removed and reported as `CorruptRecord`; `verify` also
        checks the body's SHA-256 (a full read)."""
        path = self.path_of(object_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            info = _read_record(fd, path, verify=verify)
        except CorruptRecord:
            os.close(fd)
            self._remove(path)
            raise
        if info.object_id != object_id:
            os.close(fd)  # a hash collision or a planted file: not this object
            return None
        return OpenRecord(info, fd)

    def delete(self, object_id: str) -> None:
        self._remove(self.path_of(object_id))

    def scan(self, share: int = 0, shares: int = 1) -> Iterator[RecordInfo]:
        """Every whole record of share `share` of `shares` (by file name: each record belongs
        to exactly one share), checksums verified; broken ones and abandoned temp files are
        removed.

        This is how a restarted node (each of its workers) finds its warm cache again."""
        now = time.time()
        for shard in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for path in sorted(shard.iterdir()):
                if path.name.startswith(_TEMP_PREFIX):
                    # A write that never finished, unless another worker is still writing it.
                    with contextlib.suppress(FileNotFoundError):
                        if now - path.stat().st_mtime > ABANDONED_TEMP_SECONDS:
                            self._remove(path)
                    continue
                if not path.name.endswith(_SUFFIX) or int(path.name[:8], 16) % shares != share:
                    continue
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    yield _read_record(fd, path, verify=True)
                except CorruptRecord as exc:
                    log.warning("disk tier: dropping %s: %s", path.name, exc)
                    self._remove(path)
                finally:
                    os.close(fd)

    @staticmethod
    def _remove(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _read_record(fd: int, path: Path, *, verify: bool) -> RecordInfo:
    head = os.pread(fd, _HEADER.size, 0)
    if len(head) < _HEADER.size:
        raise CorruptRecord("shorter than its header")
    magic, meta_length, body_length, digest = _HEADER.unpack(head)
    if magic != MAGIC:
        raise CorruptRecord("not a Shoal record")
    if meta_length > MAX_METADATA_BYTES:
        raise CorruptRecord("metadata length out of range")
    body_offset = _HEADER.size + meta_length
    if os.fstat(fd).st_size != body_offset + body_length:
        raise CorruptRecord("size differs from its header (truncated or appended)")
    try:
        metadata = json.loads(os.pread(fd, meta_length, _HEADER.size))
        object_id = metadata.pop("object_id")
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptRecord(f"unreadable metadata: {exc}") from exc
    if not isinstance(object_id, str):
        raise CorruptRecord("unreadable metadata: object id is not a string")
    if verify and not _body_matches(fd, body_offset, body_length, digest):
        raise CorruptRecord("body checksum mismatch")
    return RecordInfo(object_id, metadata, body_offset, body_length, path)


def _body_matches(fd: int, offset: int, length: int, digest: bytes) -> bool:
    hasher = hashlib.sha256()
    position, end = offset, offset + length
    while position < end:
        chunk = os.pread(fd, min(1024 * 1024, end - position), position)
        if not chunk:
            return False
        hasher.update(chunk)
        position += len(chunk)
    return hasher.digest() == digest


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is (a crash must not lose it).
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
