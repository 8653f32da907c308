"""The content store interface: one contract, several backends (filesystem, S3).

Keys are validated with `core.keys.validate_key` before any backend touches them. The interface
is synchronous because boto3 is; async callers run it in a thread (`asyncio.to_thread`).
"""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.keys import InvalidKey, validate_key, validate_prefix


class ObjectNotFound(KeyError):
    """No object is stored under this key."""


class StoreError(Exception):
    """The store cannot do what was asked: unreachable, misconfigured, or a write it cannot hold.

    The message names where the store lives (root directory, or endpoint and bucket), so an
    operator can act on it without a traceback.
    """


def is_valid_key(name: str) -> bool:
    """Whether `name` is a key; listings skip stored names that no key could address."""
    try:
        validate_key(name)
    except InvalidKey:
        return False
    return True


def check_range(start: int, length: int | None) -> None:
    """Refuse a negative `start` or `length` before any I/O, identically in every backend."""
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if length is not None and length < 0:
        raise ValueError(f"length must be >= 0 or None, got {length}")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    """A strong entity tag, quoted as it goes on the wire (RFC 9110 section 8.8.3)."""
    last_modified: float
    """POSIX seconds of the last write."""


class ContentStore(ABC):
    """Byte objects under slash-separated keys. Writes are atomic: readers see old or new."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size, ETag and modification time; raises `ObjectNotFound`."""

    @abstractmethod
    def read(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        """`length` bytes from `start` (to the end when None); raises `ObjectNotFound`.

        Fewer bytes come back when the object ends first (none when `start` is at or past the
        end), as with a file read; a negative `start` or `length` raises `ValueError`.
        """

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Store `data` under `key`, replacing any previous object atomically."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Store the file at `path` (streamed; large files go up in parts)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under `prefix` ('' or ending in '/'), in lexicographic order.

        A bad prefix raises `InvalidKey` at the call, not when the iterator is first advanced.
        """

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release connections and handles."""


__all__ = [
    "ContentStore",
    "InvalidKey",
    "ObjectInfo",
    "ObjectNotFound",
    "StoreError",
    "check_range",
    "is_valid_key",
    "validate_key",
    "validate_prefix",
]
