"""Durable staging of resumable uploads on the local filesystem (no HTTP here).

The tus endpoints (`origin.tus`) receive a video in pieces, possibly over days and across origin
restarts, before it is handed to packaging. This module keeps those pieces safe: every upload
is two files in the staging directory,

- `<id>.bin`, the bytes received so far, appended in place;
- `<id>.json`, its state (owner, length, committed offset, metadata, expiry, completion), always
  replaced atomically (written to a temporary file, fsync'ed, renamed over the old one, and the
  directory fsync'ed), so a crash leaves either the old state or the new one.

An append is a `ChunkWriter`: bytes are written to the data file, and `commit` fsyncs them
before it records the new offset, so an offset that was ever reported to a client is on disk.
A new `UploadStaging` on the same directory (after a restart or a crash) sees every upload and
its exact offset:

- bytes past the recorded offset are the tail of an append that did not commit. They are kept
  (fsync'ed, and the offset moves to the file's end) because a client that is cut off resumes
  from whatever the server has: the tus rule that a server keeps as much as it received.
- except for a *tentative* append (one whose chunk carries a checksum and must be kept whole or
  not at all): its start is recorded in the state before the first byte is written, and a load
  that finds that marker truncates the data file back to it.

Ids are 32 lowercase hex digits (`is_upload_id`); every method that takes one checks it before
building a path, so no id can name a file outside the directory (bad ids are `UploadNotFound`).

Concurrency: one `UploadStaging` per directory (one origin process). Whoever changes an upload
first `claim`s it; a claim is exclusive and never waits (a second claimant gets `UploadBusy`,
which HTTP answers with 423 rather than queueing requests behind a slow upload). Reading state
(`get`, `uploads`) needs no claim. Every call blocks on disk I/O: async callers run them in
threads.
"""

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
_DATA_SUFFIX = ".bin"
_STATE_SUFFIX = ".json"
_TEMP_SUFFIX = ".tmp"
_FORMAT = 1
_HASH_BLOCK = 1 << 20


class StagingError(Exception):
    """A staging operation that cannot be done (the message says why)."""


class UploadNotFound(StagingError):
    """No upload has this id (never created, terminated, expired, or not an id at all)."""


class UploadBusy(StagingError):
    """Someone else holds the claim on this upload."""


class OffsetMismatch(StagingError):
    """An append that does not start at the upload's current offset."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"upload is at offset {expected}, not {actual}")
        self.expected = expected
        self.actual = actual


class UploadTooLarge(StagingError):
    """Bytes that would run past the upload's declared length."""


@dataclass(frozen=True)
class UploadState:
    """What is known about one upload; `offset` counts committed (fsync'ed) bytes only."""

    upload_id: str
    user_id: str
    length: int
    offset: int
    metadata: dict[str, str | None]
    created_at: float
    expires_at: float
    sha256: str | None = None
    """Hex SHA-256 of the whole file, set by `ClaimedUpload.complete`."""
    handed_off: bool = False
    """The completion callback accepted the upload."""
    discarded: bool = False
    """The data file was deleted after hand-off; the state stays as a record."""

    @property
    def finished(self) -> bool:
        """Every byte has arrived (complete or not yet hashed)."""
        return self.offset == self.length

    def is_expired(self, now: float) -> bool:
        """An unfinished upload past its deadline; finished uploads never expire."""
        return not self.finished and now >= self.expires_at


def is_upload_id(value: str) -> bool:
    """Whether `value` is a well-formed upload id: exactly 32 lowercase hex digits."""
    return _ID_PATTERN.fullmatch(value) is not None


class UploadStaging:
    """The uploads staged under one directory."""

    def __init__(self, root: Path) -> None:
        """Create `root` if needed and load every upload in it.

        Leftovers of interrupted operations are cleaned up: temporary state files, data files
        without a state (a creation or termination cut short), data files of discarded uploads,
        and bytes of an uncommitted tentative append. A state file that cannot be read is
        logged and left alone, with its data file, for the operator.
        """
        self._root = root
        self._lock = threading.Lock()
        self._states: dict[str, UploadState] = {}
        self._claimed: set[str] = set()
        root.mkdir(parents=True, exist_ok=True)
        unreadable: set[str] = set()
        for path in sorted(root.iterdir()):
            if path.name.endswith(_TEMP_SUFFIX):
                path.unlink(missing_ok=True)
            elif path.suffix == _STATE_SUFFIX and is_upload_id(path.stem):
                try:
                    state, tentative_from = _load_state(path)
                except (OSError, ValueError, TypeError, KeyError) as exc:
                    log.error("unreadable upload state %s left in place: %s", path, exc)
                    unreadable.add(path.stem)
                    continue
                self._states[state.upload_id] = self._recover(state, tentative_from)
        for path in root.glob("*" + _DATA_SUFFIX):
            upload_id = path.stem
            if is_upload_id(upload_id) and upload_id not in self._states.keys() | unreadable:
                path.unlink()
        _fsync_dir(root)

    @property
    def root(self) -> Path:
        return self._root

    def data_path(self, upload_id: str) -> Path:
        """Where the bytes of `upload_id` live (`UploadNotFound` for a malformed id)."""
        return self._root / (_checked(upload_id) + _DATA_SUFFIX)

    def get(self, upload_id: str) -> UploadState:
        """The current state of `upload_id`, or `UploadNotFound`."""
        _checked(upload_id)
        with self._lock:
            state = self._states.get(upload_id)
        if state is None:
            raise UploadNotFound(upload_id)
        return state

    def uploads(self) -> list[UploadState]:
        """Every upload, oldest first."""
        with self._lock:
            states = list(self._states.values())
        return sorted(states, key=lambda state: (state.created_at, state.upload_id))

    def create(
        self,
        *,
        user_id: str,
        length: int,
        metadata: dict[str, str | None],
        created_at: float,
        expires_at: float,
    ) -> UploadState:
        """A new, empty upload of `length` bytes with a fresh random id."""
        if length < 0:
            raise StagingError(f"negative upload length {length}")
        upload_id = secrets.token_hex(16)
        state = UploadState(
            upload_id=upload_id,
            user_id=user_id,
            length=length,
            offset=0,
            metadata=dict(metadata),
            created_at=created_at,
            expires_at=expires_at,
        )
        # The data file first: a crash before the state is written leaves a data file with no
        # state, which the next load deletes; the reverse order would leave a state whose file
        # is missing.
        with open(self.data_path(upload_id), "xb") as data:
            os.fsync(data.fileno())
        self._write_state(state, None)
        return state

    @contextlib.contextmanager
    def claim(self, upload_id: str) -> Iterator["ClaimedUpload"]:
        """Exclusive use of `upload_id` for the `with` block; `UploadBusy` at once if held.

        An append still open when the block ends is rolled back.
        """
        _checked(upload_id)
        with self._lock:
            if upload_id not in self._states:
                raise UploadNotFound(upload_id)
            if upload_id in self._claimed:
                raise UploadBusy(upload_id)
            self._claimed.add(upload_id)
        claimed = ClaimedUpload(self, upload_id)
        try:
            yield claimed
        finally:
            try:
                claimed._release()
            finally:
                with self._lock:
                    self._claimed.discard(upload_id)

    def expire(self, upload_id: str, now: float) -> bool:
        """Remove `upload_id` if it has expired at `now`; whether it was removed.

        An unknown or malformed id, an upload that has not expired, and one that is claimed
        right now (the next sweep will get it) are all left alone: False.
        """
        try:
            with self.claim(upload_id) as claimed:
                if not claimed.state.is_expired(now):
                    return False
                claimed.terminate()
                return True
        except (UploadNotFound, UploadBusy):
            return False

    def sweep(self, now: float) -> list[str]:
        """Remove every upload expired at `now`; the ids removed."""
        return [
            state.upload_id
            for state in self.uploads()
            if state.is_expired(now) and self.expire(state.upload_id, now)
        ]

    def discard(self, upload_id: str) -> None:
        """Delete the data file of a handed-off upload, keeping its state (`UploadBusy` if held)."""
        with self.claim(upload_id) as claimed:
            claimed.discard()

    # Internals shared with ClaimedUpload and ChunkWriter.

    def _state_path(self, upload_id: str) -> Path:
        return self._root / (upload_id + _STATE_SUFFIX)

    def _write_state(self, state: UploadState, tentative_from: int | None) -> None:
        record: dict[str, Any] = {"format": _FORMAT, **asdict(state)}
        record["tentative_from"] = tentative_from
        target = self._state_path(state.upload_id)
        temp = self._root / f"{state.upload_id}.{secrets.token_hex(4)}{_TEMP_SUFFIX}"
        try:
            with open(temp, "w", encoding="utf-8") as file:
                json.dump(record, file, sort_keys=True)
                file.flush()
                os.fsync(file.fileno())
            temp.replace(target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(self._root)
        with self._lock:
            self._states[state.upload_id] = state

    def _forget(self, upload_id: str) -> None:
        # The state goes first: a crash in between leaves a data file without state, which the
        # next load deletes.
        self._state_path(upload_id).unlink(missing_ok=True)
        self.data_path(upload_id).unlink(missing_ok=True)
        _fsync_dir(self._root)
        with self._lock:
            self._states.pop(upload_id, None)

    def _recover(self, state: UploadState, tentative_from: int | None) -> UploadState:
        """The state as it really is on disk after whatever interrupted the last process."""
        data_path = self.data_path(state.upload_id)
        if state.discarded:
            data_path.unlink(missing_ok=True)
            return state
        if not data_path.exists():
            if state.finished and state.offset > 0:
                log.error("data of upload %s is missing", state.upload_id)
                return state
            data_path.touch()
        recovered = state
        with open(data_path, "r+b") as data:
            size = data.seek(0, os.SEEK_END)
            if tentative_from is not None:
                # A checksummed chunk was being written: it is kept whole or not at all.
                data.truncate(tentative_from)
                recovered = replace(state, offset=tentative_from)
            elif size != state.offset and not state.finished:
                # The tail of an append that never committed (or, after a power loss, bytes
                # that never reached the disk): the file itself says how much is there.
                if size > state.length:
                    data.truncate(state.length)
                recovered = replace(state, offset=min(size, state.length))
            os.fsync(data.fileno())
        if recovered != state or tentative_from is not None:
            log.info(
                "upload %s recovered at offset %d (recorded %d)",
                state.upload_id,
                recovered.offset,
                state.offset,
            )
            self._write_state(recovered, None)
        return recovered


class ClaimedUpload:
    """An upload its holder may change; valid only inside `UploadStaging.claim`'s block."""

    def __init__(self, staging: UploadStaging, upload_id: str) -> None:
        self.upload_id = upload_id
        self._staging = staging
        self._writer: ChunkWriter | None = None
        self._released = False

    @property
    def state(self) -> UploadState:
        return self._staging.get(self.upload_id)

    def begin_append(self, offset: int, *, tentative: bool = False) -> "ChunkWriter":
        """Start appending at `offset`, which must be the current offset (`OffsetMismatch`).

        A tentative append (a checksummed chunk) is recorded before anything is written, so a
        crash before `commit` loses all of it, never a part of it.
        """
        self._check_usable()
        if self._writer is not None:
            raise StagingError(f"upload {self.upload_id} already has an open append")
        state = self.state
        if offset != state.offset:
            raise OffsetMismatch(expected=state.offset, actual=offset)
        if tentative:
            self._staging._write_state(state, offset)
        self._writer = ChunkWriter(self, state, tentative)
        return self._writer

    def complete(self) -> UploadState:
        """Hash the whole data file as it is on disk and record the upload as complete."""
        self._check_usable()
        state = self.state
        if not state.finished:
            raise StagingError(f"upload {self.upload_id} has {state.offset}/{state.length} bytes")
        digest = hashlib.sha256()
        size = 0
        with open(self._staging.data_path(self.upload_id), "rb") as data:
            while block := data.read(_HASH_BLOCK):
                digest.update(block)
                size += len(block)
        if size != state.length:
            raise StagingError(f"data of upload {self.upload_id} has {size}, not {state.length}")
        completed = replace(state, sha256=digest.hexdigest())
        self._staging._write_state(completed, None)
        return completed

    def mark_handed_off(self) -> UploadState:
        """Record that the completion callback accepted the upload."""
        self._check_usable()
        state = self.state
        if state.sha256 is None:
            raise StagingError(f"upload {self.upload_id} is not complete")
        handed_off = replace(state, handed_off=True)
        self._staging._write_state(handed_off, None)
        return handed_off

    def discard(self) -> None:
        """Delete the data file of a handed-off upload; the state stays, marked discarded."""
        self._check_usable()
        state = self.state
        if not state.handed_off:
            raise StagingError(f"upload {self.upload_id} has not been handed off")
        if not state.discarded:
            # Marked first: a crash before the unlink leaves a discarded state whose data file
            # the next load deletes.
            self._staging._write_state(replace(state, discarded=True), None)
        self._staging.data_path(self.upload_id).unlink(missing_ok=True)

    def terminate(self) -> None:
        """Delete the upload, state and data; its id is unknown from now on."""
        self._check_usable()
        if self._writer is not None:
            self._writer._abandon()
        self._staging._forget(self.upload_id)

    def _check_usable(self) -> None:
        if self._released:
            raise StagingError(f"the claim on upload {self.upload_id} has ended")

    def _writer_done(self) -> None:
        self._writer = None

    def _release(self) -> None:
        if self._writer is not None:
            self._writer._abandon()
        self._released = True


class ChunkWriter:
    """One append to an upload: `write` any number of times, then `commit` or `rollback`.

    Methods hold a lock, so a `commit` or `rollback` from one thread waits for a `write` still
    running in another (an async caller that is cancelled while a write runs in a worker
    thread settles the append from the event loop).
    """

    def __init__(self, claimed: ClaimedUpload, state: UploadState, tentative: bool) -> None:
        self.start = state.offset
        self.written = 0
        self._claimed = claimed
        self._staging = claimed._staging
        self._length = state.length
        self._tentative = tentative
        self._lock = threading.Lock()
        # Unbuffered: every write reaches the kernel at once, so a process crash keeps what was
        # written (the load adopts it) rather than losing a user-space buffer.
        self._file: io.FileIO | None = io.FileIO(self._staging.data_path(state.upload_id), "r+")
        # Anything past the committed offset is not part of the upload (load trims it too).
        self._file.truncate(self.start)
        self._file.seek(self.start)

    def write(self, data: bytes) -> None:
        """Append `data`, or raise `UploadTooLarge` (writing nothing) if it runs past the end."""
        with self._lock:
            file = self._open_file()
            end = self.start + self.written + len(data)
            if end > self._length:
                raise UploadTooLarge(f"{end} bytes is more than the upload's {self._length}")
            view = memoryview(data)
            while view:
                # A raw write may write less than asked (e.g. interrupted by a signal).
                count = file.write(view)
                self.written += count
                view = view[count:]

    def commit(self) -> UploadState:
        """Make the written bytes durable (fsync), then count them in the offset."""
        with self._lock:
            file = self._open_file()
            os.fsync(file.fileno())
            self._close()
            state = replace(self._claimed.state, offset=self.start + self.written)
            self._staging._write_state(state, None)
            return state

    def rollback(self) -> UploadState:
        """Forget everything written by this append; the offset stays where it was."""
        with self._lock:
            return self._rollback()

    def _abandon(self) -> None:
        """Roll back unless another thread settled the append meanwhile (a claim that ends)."""
        with self._lock:
            if self._file is not None:
                self._rollback()

    def _rollback(self) -> UploadState:
        file = self._open_file()
        file.truncate(self.start)
        os.fsync(file.fileno())
        self._close()
        state = self._claimed.state
        if self._tentative:
            self._staging._write_state(state, None)
        return state

    def _open_file(self) -> io.FileIO:
        if self._file is None:
            raise StagingError("this append has already been committed or rolled back")
        return self._file

    def _close(self) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        self._claimed._writer_done()


def _checked(upload_id: str) -> str:
    if not is_upload_id(upload_id):
        raise UploadNotFound(f"not an upload id: {upload_id!r}")
    return upload_id


def _load_state(path: Path) -> tuple[UploadState, int | None]:
    with open(path, encoding="utf-8") as file:
        record = json.load(file)
    if not isinstance(record, dict) or record.pop("format", None) != _FORMAT:
        raise ValueError("not an upload state record")
    tentative_from = record.pop("tentative_from", None)
    state = UploadState(**record)
    if state.upload_id != path.stem:
        raise ValueError(f"record names upload {state.upload_id!r}")
    if tentative_from is not None and not isinstance(tentative_from, int):
        raise ValueError(f"bad tentative marker {tentative_from!r}")
    return state, tentative_from


def _fsync_dir(path: Path) -> None:
    """Make renames, creations and deletions in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
