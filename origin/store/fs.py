"""The filesystem backend: one regular file per object under a root directory (POSIX only).

Confinement. Keys are validated first, so no `..`, absolute path, NUL byte or backslash ever
reaches the filesystem. Then, as defence in depth, every path below the root is opened one
component at a time relative to its parent's descriptor (`openat`) with `O_NOFOLLOW`: a symlink
anywhere inside the store is never followed, wherever it points, and there is no window between
checking a path and using it for a concurrent rename to redirect. The root itself may be (or sit
under) a symlink: it is configuration, and is resolved once when the store is opened.

A key whose path meets a symlink, a non-directory on the way, or a directory at the end is:

- for `stat`, `read` and `exists`: `ObjectNotFound`. To a client it simply is not an object, so
  the origin answers 404 and reveals nothing about the tree;
- for `put_bytes` and `put_file`: `StoreError`, since something is in the way of the write;
- for `delete`: nothing to delete;
- for `list`: skipped. Listing never descends into a symlinked directory and lists only regular
  files whose key is valid, which hides the dot-prefixed temporary files of writes in progress.

Atomic writes: the data goes to a temporary file in the target directory, is fsynced and renamed
over the key, then the directory is fsynced, so readers and crashes see the old or the new object.
Deleting the last object of a directory removes the emptied directories, so a deleted key's name
can later hold an object of its own, as in S3.

ETags are strong and cost one `stat`: a hash of device, inode, size and modification time. A
write stamps the new file's mtime from the nanosecond clock, because file timestamps are
coarser (a kernel tick) and a replaced file can reuse the inode of the one it replaced.
"""

import errno
import hashlib
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, TypeVar

from origin.store.base import (
    ContentStore,
    ObjectInfo,
    ObjectNotFound,
    StoreError,
    check_range,
    is_valid_key,
    validate_key,
    validate_prefix,
)

_Result = TypeVar("_Result")

_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_FLAGS = _ROOT_FLAGS | os.O_NOFOLLOW
# O_NONBLOCK: opening a FIFO planted in the store must not hang the reader (the S_ISREG check
# then refuses it). It changes nothing for regular files.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# How a walk ends when a component is missing (ENOENT), a file (ENOTDIR) or a symlink (ELOOP).
_NOT_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})
# Errors of a write whose path is blocked by a file, a symlink or a directory.
_IN_THE_WAY = frozenset({errno.ENOTDIR, errno.ELOOP, errno.EISDIR})
# Dot-prefixed, hence never a valid key segment: invisible to `list` and unreachable by key.
_TEMP_PREFIX = ".tmp-"
_COPY_CHUNK = 1024 * 1024
# A write retries when a concurrent delete removes an emptied directory it is about to use.
_WRITE_ATTEMPTS = 3


def _etag(st: os.stat_result) -> str:
    identity = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()
    return f'"{hashlib.blake2b(identity, digest_size=16).hexdigest()}"'


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key=key, size=st.st_size, etag=_etag(st), last_modified=st.st_mtime_ns / 1e9)


def _open_or_make_dir(parent_fd: int, name: str) -> int:
    attempts_left = _WRITE_ATTEMPTS
    while True:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            attempts_left -= 1
            if not attempts_left:
                raise
        # FileExistsError: made concurrently, or a file or symlink is in the way: the next open
        # tells which. Otherwise the new entry is made durable before objects go into it.
        with suppress(FileExistsError):
            os.mkdir(name, dir_fd=parent_fd)
            os.fsync(parent_fd)


class FilesystemStore(ContentStore):
    """Objects as files under `root`, which is created if missing."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    def __repr__(self) -> str:
        return f"FilesystemStore({str(self.root)!r})"

    @contextmanager
    def _dirs(self, names: Sequence[str], *, create: bool = False) -> Iterator[list[int]]:
        """Descriptors of the root and of each directory below it along `names`, in order.

        No symlink is followed. A missing directory is made when `create`, else the walk raises
        OSError with an errno in `_NOT_THERE`. The descriptors are closed on exit.
        """
        fds = [os.open(self.root, _ROOT_FLAGS)]
        try:
            for name in names:
                if create:
                    fds.append(_open_or_make_dir(fds[-1], name))
                else:
                    fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
            yield fds
        finally:
            for fd in fds:
                os.close(fd)

    def _at_object(self, key: str, action: Callable[[int, str], _Result]) -> _Result:
        """Run `action(parent_fd, name)` on the key's last component; a blocked walk is missing."""
        validate_key(key)
        *dirs, name = key.split("/")
        try:
            with self._dirs(dirs) as fds:
                return action(fds[-1], name)
        except OSError as error:
            if error.errno in _NOT_THERE:
                raise ObjectNotFound(key) from None
            raise

    def stat(self, key: str) -> ObjectInfo:
        st = self._at_object(
            key, lambda parent, name: os.stat(name, dir_fd=parent, follow_symlinks=False)
        )
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(key)
        return _info(key, st)

    def read(self, key: str, start: int = 0, length: int | None = None) -> bytes:
        check_range(start, length)
        fd = self._at_object(key, lambda parent, name: os.open(name, _READ_FLAGS, dir_fd=parent))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ObjectNotFound(key)
            end = st.st_size if length is None else min(st.st_size, start + length)
            chunks = []
            position = start
            # pread returns short counts above ~2 GiB per call, so loop; an empty chunk means
            # the file shrank under us (edited out of band: our writes never truncate in place).
            while position < end and (chunk := os.pread(fd, end - position, position)):
                chunks.append(chunk)
                position += len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return self._write(key, lambda target: target.write(data))

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        validate_key(key)
        with open(path, "rb") as source:
            return self._write(key, lambda target: shutil.copyfileobj(source, target, _COPY_CHUNK))

    def _write(self, key: str, fill: Callable[[BinaryIO], object]) -> ObjectInfo:
        validate_key(key)
        *dirs, name = key.split("/")
        try:
            attempts_left = _WRITE_ATTEMPTS
            while True:
                with self._dirs(dirs, create=True) as fds:
                    parent = fds[-1]
                    temp = f"{_TEMP_PREFIX}{secrets.token_hex(8)}-{name}"
                    try:
                        fd = os.open(temp, _TEMP_FLAGS, 0o666, dir_fd=parent)
                    except FileNotFoundError:
                        attempts_left -= 1
                        if not attempts_left:
                            raise
                        continue  # a concurrent delete removed the emptied directory: walk again
                    try:
                        with open(fd, "wb") as target:
                            fill(target)
                            target.flush()
                            now = time.time_ns()
                            os.utime(fd, ns=(now, now))
                            os.fsync(fd)
                            written = os.fstat(fd)
                        os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
                    except BaseException:
                        with suppress(FileNotFoundError):
                            os.unlink(temp, dir_fd=parent)
                        raise
                    os.fsync(parent)
                    return _info(key, written)
        except OSError as error:
            if error.errno in _IN_THE_WAY:
                raise StoreError(
                    f"cannot store {key!r} in {self.root}: a file, directory or symlink is in "
                    f"the way ({error.strerror})"
                ) from error
            raise

    def delete(self, key: str) -> None:
        validate_key(key)
        *dirs, name = key.split("/")
        try:
            with self._dirs(dirs) as fds:
                os.unlink(name, dir_fd=fds[-1])
                # Remove the directories this delete emptied, deepest first. Best effort: stop
                # at the first that still holds something (or that a concurrent write refilled).
                for depth in range(len(dirs), 0, -1):
                    try:
                        os.rmdir(dirs[depth - 1], dir_fd=fds[depth - 1])
                    except OSError:
                        break
        except OSError as error:
            if error.errno in _NOT_THERE or error.errno == errno.EISDIR:
                return
            raise

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        try:
            with self._dirs(prefix.split("/")[:-1]) as fds:
                keys = sorted(self._walk(fds[-1], prefix))
        except OSError as error:
            if error.errno in _NOT_THERE:
                return iter(())
            raise
        # Sorted as a whole: a walk yields "a/b" before "a-c", but "-" sorts before "/".
        return iter(keys)

    def _walk(self, dir_fd: int, key_prefix: str) -> Iterator[str]:
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                key = key_prefix + entry.name
                if not is_valid_key(key):
                    continue
                if entry.is_file(follow_symlinks=False):
                    yield key
                elif entry.is_dir(follow_symlinks=False):
                    try:
                        child_fd = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
                    except OSError as error:
                        if error.errno in _NOT_THERE:
                            continue  # removed or swapped for a symlink since scandir saw it
                        raise
                    try:
                        yield from self._walk(child_fd, key + "/")
                    finally:
                        os.close(child_fd)
