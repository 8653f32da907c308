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
        """`length` bytes from `start` (to the end when None); raises `ObjectNotFound`."""

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
        """Keys under `prefix` ('' or ending in '/'), in lexicographic order."""

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
    "validate_key",
    "validate_prefix",
]
