"""`shoal upload FILE --caption ...`: send a video to the origin over tus, resuming if cut off.

Creators upload from laptops and phones on networks that drop; a video of a few hundred MiB must
not start over because a connection broke or the command was interrupted. So the client speaks
tus 1.0.0 (the server is `origin.tus`): it creates an upload, sends the file in chunks that carry
a SHA-256 checksum (a damaged chunk is refused with 460 instead of being stored), and only ever
trusts the offset the server confirms.

- Across runs: a state file ($XDG_STATE_HOME/shoal/uploads.json) maps the file (absolute path,
  size, modification time) and the origin to the upload's URL. It is written before the first
  byte is sent, so re-running the same command after Ctrl-C, a crash or a reboot asks the server
  where it stopped (HEAD) and goes on from there. A file that changed is a new upload; an upload
  the server no longer has (404, 410: expired or removed) is forgotten and started afresh.
- Within a run: a dropped connection, a timeout, a 5xx, 423 (the server still holds a previous,
  cut-off request), 408 or 460 is retried with exponential backoff, each time after asking the
  server for its real offset; a 409 (offset mismatch) re-synchronizes at once. Bad credentials
  and a file over the server's limit fail at once: retrying cannot help.
- After the last byte the origin hands the upload over to processing; the client polls
  `/api/uploads/{id}` until the video is ready, held for moderation, failed or rejected.

The client is synchronous and uses only the standard library (`http.client`): the command runs
one transfer at a time and needs no event loop.
"""

import argparse
import base64
import contextlib
import hashlib
import http.client
import json
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO
from urllib.parse import quote, urljoin, urlsplit

TUS_VERSION = "1.0.0"
DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
FINAL_STATUSES = frozenset({"ready", "held", "failed", "rejected"})
EXIT_FAILED = 1
EXIT_HELD = 3
EXIT_INTERRUPTED = 130
_SOCKET_TIMEOUT = 60.0
"""Seconds without progress on a socket before the request counts as failed (and is retried)."""
_FIRST_BACKOFF = 0.5
_STATE_MAX_AGE = 7 * 86_400.0
"""Entries older than this are dropped from the state file: the origin expires unfinished
uploads after a day, so such an entry could only lead to a 404."""
_MIB = 1024 * 1024

Progress = Callable[[int, int], None]
"""Called with (bytes the server confirmed, total bytes)."""


class UploadError(Exception):
    """The upload cannot go on. The message is what `shoal upload` prints."""


@dataclass(frozen=True)
class UploadResult:
    upload_url: str
    video: dict[str, object]
    """The video as the origin last described it (`status`, `playback`, ...); empty when not
    waiting and the origin had not taken the upload over yet."""


def default_state_file() -> Path:
    """Where uploads to resume are remembered: $XDG_STATE_HOME/shoal/uploads.json."""
    base = os.environ.get("XDG_STATE_HOME", "")
    # The XDG specification says relative paths in these variables are invalid and ignored.
    if not Path(base).is_absolute():
        base = str(Path.home() / ".local" / "state")
    return Path(base) / "shoal" / "uploads.json"


def upload_file(
    path: Path,
    *,
    origin: str,
    token: str,
    caption: str,
    music: str = "",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    state_file: Path | None = None,
    progress: Progress | None = None,
    wait: bool = True,
    timeout: float = 600.0,
    poll_interval: float = 0.5,
    retries: int = 5,
) -> UploadResult:
    """Upload `path` to `origin` (resuming an earlier attempt), then wait for the video.

    `progress` is called with every offset the server confirms: where the upload starts (or
    where a retry finds it), then after every chunk.
    `retries`: consecutive failures tolerated without progress (a confirmed chunk resets the
    count). `timeout`: seconds to wait for processing once every byte is in. Raises
    `UploadError`; a KeyboardInterrupt leaves the upload resumable."""
    if chunk_size <= 0:
        raise UploadError(f"the chunk size must be positive, not {chunk_size}")
    origin = _check_origin(origin)
    if not token:
        raise UploadError("no token: pass --token")
    with _open_source(path) as source, contextlib.closing(_Http(token)) as client:
        states = _StateFile(state_file or default_state_file())
        key = json.dumps([str(source.path), source.size, source.mtime_ns, origin])
        metadata = {"filename": source.path.name, "caption": caption, "music": music}
        uploader = _Uploader(
            client,
            source,
            files_url=f"{origin}/files/",
            metadata={name: value for name, value in metadata.items() if name != "music" or value},
            chunk_size=chunk_size,
            progress=progress,
            retries=retries,
        )
        url = uploader.run(states, key)
        # The entry has served its purpose: a run after this one is a new upload of the file.
        states.forget(key)
        api_url = f"{origin}/api/uploads/{quote(urlsplit(url).path.rstrip('/').rsplit('/')[-1])}"
        if wait:
            video = _wait_for_video(client, api_url, timeout=timeout, interval=poll_interval)
        else:
            video = _peek_video(client, api_url)
    return UploadResult(upload_url=url, video=video)


def _check_origin(origin: str) -> str:
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UploadError(f"the origin must be an http:// or https:// URL, not {origin!r}")
    return origin.rstrip("/")


# -- the source file --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    path: Path
    """Absolute, symbolic links resolved: the same file has one key in the state file."""
    file: BinaryIO
    size: int
    mtime_ns: int

    def chunk(self, offset: int, length: int) -> bytes:
        self.file.seek(offset)
        data = self.file.read(length)
        if len(data) != length:
            raise UploadError(f"{self.path} changed while it was being uploaded")
        return data


@contextlib.contextmanager
def _open_source(path: Path) -> Iterator[_Source]:
    """The file, checked: it exists, is a regular file, is readable and is not empty."""
    try:
        # Checked before opening too: opening a FIFO for reading would block.
        _check_file(path, path.stat())
        file = path.open("rb")
    except FileNotFoundError:
        raise UploadError(f"{path}: no such file") from None
    except OSError as exc:
        raise UploadError(f"{path}: {exc.strerror or exc}") from None
    with file:
        # The open file's own size and time: what is checked is what is sent.
        info = os.fstat(file.fileno())
        _check_file(path, info)
        yield _Source(path.resolve(), file, info.st_size, info.st_mtime_ns)


def _check_file(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UploadError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise UploadError(f"{path}: the file is empty")


# -- the state file ---------------------------------------------------------------------------


class _StateFile:
    """Upload URLs to resume, by file and origin: `{"uploads": {key: {"url", "saved_at"}}}`.

    Replaced atomically (temporary file, fsync, rename), so an interrupted write leaves the old
    version. A file that cannot be read or parsed counts as empty: losing it only costs the
    chance to resume, never the upload itself."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, key: str) -> str | None:
        entry = self._load().get(key)
        return entry["url"] if entry else None

    def remember(self, key: str, url: str) -> None:
        now = time.time()
        uploads = {
            name: entry
            for name, entry in self._load().items()
            if now - entry["saved_at"] < _STATE_MAX_AGE
        }
        uploads[key] = {"url": url, "saved_at": now}
        try:
            self._save(uploads)
        except OSError as exc:
            raise UploadError(f"cannot record the upload in {self.path}: {exc}") from exc

    def forget(self, key: str) -> None:
        uploads = self._load()
        if uploads.pop(key, None) is None:
            return
        # A stale entry costs the next run one HEAD, which finds the upload complete or gone;
        # not worth failing an upload that has succeeded.
        with contextlib.suppress(OSError):
            self._save(uploads)

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        uploads = data.get("uploads") if isinstance(data, dict) else None
        if not isinstance(uploads, dict):
            return {}
        return {
            key: entry
            for key, entry in uploads.items()
            if isinstance(entry, dict)
            and isinstance(entry.get("url"), str)
            and isinstance(entry.get("saved_at"), int | float)
        }

    def _save(self, uploads: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".uploads-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump({"uploads": uploads}, file, indent=1, sort_keys=True)
                file.flush()
                os.fsync(file.fileno())
            Path(temporary).replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise


# -- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Response:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes

    def number(self, name: str) -> int | None:
        """A non-negative integer header field, or None if absent or malformed."""
        value = (self.headers.get(name) or "").strip()
        return int(value) if value.isdigit() else None

    def describe(self) -> str:
        """Status, reason and the first line of the body: enough to tell what went wrong."""
        status = f"{self.status} {self.reason}".strip()
        text = self.body.decode("utf-8", "replace").strip().splitlines()
        return f"{status}: {text[0][:200]}" if text else status


class _Transient(Exception):
    """A failure that may not happen again: worth a retry after asking for the offset."""

    def __init__(self, message: str, *, backoff: bool = True) -> None:
        super().__init__(message)
        self.backoff = backoff


class _Gone(Exception):
    """The server does not have the upload (any more): start a new one."""


class _Http:
    """Requests with the bearer token, over one keep-alive connection per host.

    A connection that failed in any way is closed and the next request opens a new one."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._connections: dict[tuple[str, str], http.client.HTTPConnection] = {}

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> _Response:
        """The response; `_Transient` if the connection failed or timed out."""
        parts = urlsplit(url)
        where = (parts.scheme, parts.netloc)
        connection = self._connections.get(where)
        if connection is None:
            kind = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            connection = self._connections[where] = kind(parts.netloc, timeout=_SOCKET_TIMEOUT)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        fields = {"Authorization": f"Bearer {self._token}", **(headers or {})}
        try:
            connection.request(method, target, body=body, headers=fields)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop(where)
            raise _Transient(f"{method} {url}: {exc or type(exc).__name__}") from exc
        if response.will_close:
            self._drop(where)
        return _Response(response.status, response.reason, response.headers, data)

    def close(self) -> None:
        for where in list(self._connections):
            self._drop(where)

    def _drop(self, where: tuple[str, str]) -> None:
        connection = self._connections.pop(where, None)
        if connection is not None:
            connection.close()


# -- the tus upload ---------------------------------------------------------------------------


class _Uploader:
    """One file's way to the origin: create or resume the upload, then send what is missing."""

    def __init__(
        self,
        client: _Http,
        source: _Source,
        *,
        files_url: str,
        metadata: dict[str, str],
        chunk_size: int,
        progress: Progress | None,
        retries: int,
    ) -> None:
        self._client = client
        self._source = source
        self._files_url = files_url
        self._metadata = metadata
        self._chunk_size = chunk_size
        self._progress = progress
        self._retries = retries
        self._failures = 0
        """Consecutive failures since the last confirmed chunk."""

    def run(self, states: _StateFile, key: str) -> str:
        """The URL of the complete upload."""
        url = states.get(key)
        offset: int | None = None  # unknown: ask the server
        resumed = url is not None
        while True:
            if url is None:
                url = self._retrying(self._create)
                # Before any data: from now on an interrupted run can resume this upload.
                states.remember(key, url)
                offset = 0
                self._report(offset)
            try:
                self._send(url, offset)
                return url
            except _Gone as gone:
                states.forget(key)
                if not resumed:
                    raise UploadError(
                        f"the origin lost the upload it just created: {gone}"
                    ) from None
                resumed = False
                url = None

    def _retrying(self, attempt: Callable[[], str]) -> str:
        while True:
            try:
                return attempt()
            except _Transient as exc:
                self._failed(exc)

    def _failed(self, exc: _Transient) -> None:
        self._failures += 1
        if self._failures > self._retries:
            raise UploadError(f"giving up after {self._retries} retries: {exc}") from None
        if exc.backoff:
            time.sleep(_FIRST_BACKOFF * 2 ** (self._failures - 1))

    def _tus(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> _Response:
        return self._client.request(
            method, url, {"Tus-Resumable": TUS_VERSION, **(headers or {})}, body
        )

    def _create(self) -> str:
        response = self._tus(
            "POST",
            self._files_url,
            {
                "Upload-Length": str(self._source.size),
                "Upload-Metadata": _encode_metadata(self._metadata),
            },
        )
        location = response.headers.get("Location")
        if response.status != 201:
            raise self._refusal(response)
        if not location:
            raise UploadError(
                f"the origin created an upload but sent no Location ({self._files_url})"
            )
        # A relative Location is relative to the URL of the request (RFC 9110, section 10.2.2).
        return urljoin(self._files_url, location.strip())

    def _send(self, url: str, offset: int | None) -> None:
        """Send every byte from `offset` on (None: ask the server where it is first)."""
        size = self._source.size
        while True:
            try:
                if offset is None:
                    offset = self._head(url)
                    self._report(offset)
                if offset == size:
                    return
                length = min(self._chunk_size, size - offset)
                chunk = self._source.chunk(offset, length)
                digest = base64.b64encode(hashlib.sha256(chunk).digest()).decode("ascii")
                response = self._tus(
                    "PATCH",
                    url,
                    {
                        "Content-Type": "application/offset+octet-stream",
                        "Upload-Offset": str(offset),
                        "Upload-Checksum": f"sha256 {digest}",
                    },
                    chunk,
                )
                if response.status in (404, 410):
                    raise _Gone(f"{url}: {response.describe()}")
                if response.status != 204:
                    raise self._refusal(response)
                confirmed = response.number("Upload-Offset")
                # The server's word is the truth, but it must be progress within the file.
                if confirmed is None or not offset < confirmed <= size:
                    raise UploadError(
                        f"the origin confirmed offset {confirmed} after sending {length} bytes "
                        f"at {offset} (of {size}): not a tus server?"
                    )
                offset = confirmed
                self._failures = 0
                self._report(offset)
            except _Transient as exc:
                offset = None
                self._failed(exc)

    def _head(self, url: str) -> int:
        response = self._tus("HEAD", url)
        if response.status in (404, 410):
            raise _Gone(f"{url}: {response.status}")
        if response.status != 200:
            raise self._refusal(response)
        offset = response.number("Upload-Offset")
        if response.number("Upload-Length") != self._source.size or offset is None:
            # Not an upload of this file (or not a tus answer): start one that is.
            raise _Gone(f"{url} is not an upload of these {self._source.size} bytes")
        if offset > self._source.size:
            raise UploadError(f"the origin reports offset {offset} beyond the file's size")
        return offset

    def _refusal(self, response: _Response) -> Exception:
        """What an unexpected status means: a `_Transient` to retry or an `UploadError`."""
        status = response.status
        if status in (401, 403):
            return UploadError(f"the origin refused the token ({response.describe()})")
        if status == 413:
            limit = self._max_size()
            allowed = f" ({limit} bytes, Tus-Max-Size)" if limit is not None else ""
            return UploadError(
                f"{self._source.path} is {self._source.size} bytes, larger than the origin "
                f"allows{allowed}"
            )
        if status == 409:
            # Offset mismatch: the server has more or less than assumed. No need to wait.
            return _Transient(f"offset mismatch ({response.describe()})", backoff=False)
        if status >= 500 or status in (408, 423, 460):
            return _Transient(f"the origin answered {response.describe()}")
        return UploadError(f"unexpected answer from the origin: {response.describe()}")

    def _max_size(self) -> int | None:
        """The server's Tus-Max-Size, if it says (only needed to explain a 413)."""
        try:
            response = self._client.request("OPTIONS", self._files_url)
        except _Transient:
            return None
        return response.number("Tus-Max-Size")

    def _report(self, offset: int) -> None:
        if self._progress is not None:
            self._progress(offset, self._source.size)


def _encode_metadata(metadata: dict[str, str]) -> str:
    """`Upload-Metadata`: `key base64(value)` pairs; an empty value is the bare key."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}" if value else key
        for key, value in metadata.items()
    )


# -- after the upload -------------------------------------------------------------------------


def _wait_for_video(
    client: _Http, api_url: str, *, timeout: float, interval: float
) -> dict[str, object]:
    """Poll until the video reaches a final status; `UploadError` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = "not taken over from the upload yet"
    while True:
        try:
            video = _fetch_video(client, api_url)
        except _Transient as exc:
            # Processing goes on without us: a glitch while asking is no reason to stop waiting.
            last = f"unknown ({exc})"
        else:
            if video is not None:
                if video["status"] in FINAL_STATUSES:
                    return video
                last = str(video["status"])
        if time.monotonic() + interval > deadline:
            raise UploadError(
                f"timed out after {timeout:g} s waiting for the video to be processed "
                f"(last status: {last}); the upload itself is complete"
            )
        time.sleep(interval)


def _peek_video(client: _Http, api_url: str) -> dict[str, object]:
    """The video if the origin knows it already, else empty (one request, no waiting)."""
    try:
        return _fetch_video(client, api_url) or {}
    except _Transient:
        return {}


def _fetch_video(client: _Http, api_url: str) -> dict[str, object] | None:
    """The video of the upload; None while the origin has not taken the upload over (404)."""
    response = client.request("GET", api_url, {"Accept": "application/json"})
    if response.status == 404:
        return None
    if response.status in (401, 403):
        raise UploadError(f"the origin refused the token ({response.describe()})")
    if response.status >= 500:
        raise _Transient(f"GET {api_url}: {response.describe()}")
    if response.status != 200:
        raise UploadError(f"unexpected answer from {api_url}: {response.describe()}")
    try:
        video = json.loads(response.body)["video"]
    except (ValueError, KeyError, TypeError):
        video = None
    if not isinstance(video, dict) or not isinstance(video.get("status"), str):
        raise UploadError(f"unexpected answer from {api_url}: no video status")
    return video


# -- the command ------------------------------------------------------------------------------


def add_upload_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `shoal upload`."""
    parser.add_argument("file", metavar="FILE", type=Path, help="the video file to upload")
    parser.add_argument("--caption", required=True, help="the video's caption")
    parser.add_argument("--music", default="", help="the music credit (default: none)")
    parser.add_argument("--origin", help="the origin's base URL (default: the configured one)")
    parser.add_argument("--token", help="the creator's bearer token (default: the configured one)")
    parser.add_argument(
        "--chunk-size",
        type=_byte_size,
        default=DEFAULT_CHUNK_SIZE,
        help="bytes per request, e.g. 1048576, 512K or 8M (default: 4M); smaller chunks lose "
        "less on a flaky network",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="exit once the bytes are in; print the upload URL (and the video id if known)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=600.0,
        help="seconds to wait for processing once uploaded (default: 600)",
    )
    parser.add_argument(
        "--play-base",
        help="base URL for the printed playback URL, e.g. an edge (default: the origin)",
    )


def run_upload(args: argparse.Namespace, *, default_origin: str, default_token: str) -> int:
    """`shoal upload`: progress on stderr, the playback URL on stdout; the exit status."""
    origin = args.origin or default_origin
    bar = _ProgressBar(sys.stderr, done_note=None if args.no_wait else "waiting for processing")
    try:
        try:
            result = upload_file(
                args.file,
                origin=origin,
                token=args.token or default_token,
                caption=args.caption,
                music=args.music,
                chunk_size=args.chunk_size,
                progress=bar,
                wait=not args.no_wait,
                timeout=args.timeout,
            )
        finally:
            bar.end_line()
    except UploadError as exc:
        print(f"shoal upload: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        if bar.complete:
            # The state entry is gone once every byte is in: running again would upload again.
            print(
                "shoal upload: interrupted while waiting; the upload is complete and the origin "
                "goes on processing it",
                file=sys.stderr,
            )
        else:
            print(
                "shoal upload: interrupted; run the same command again to resume where it stopped",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    video = result.video
    if args.no_wait:
        print(result.upload_url)
        if video.get("id"):
            print(f"video {video['id']}")
        return 0
    status = video["status"]
    reason = video.get("reason") or "no reason given"
    if status == "held":
        print(f"shoal upload: held for moderation: {reason}", file=sys.stderr)
        return EXIT_HELD
    if status != "ready":
        print(f"shoal upload: video {status}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    playback = video.get("playback")
    if not isinstance(playback, str) or not playback:
        print(
            "shoal upload: the video is ready but the origin gave no playback path", file=sys.stderr
        )
        return EXIT_FAILED
    print(urljoin((args.play_base or origin).rstrip("/") + "/", playback.lstrip("/")))
    return 0


def _byte_size(text: str) -> int:
    """A byte count with an optional binary suffix: 65536, 512K, 4M, 1G."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    size = text.strip().upper().removesuffix("IB").removesuffix("B")
    factor = units.get(size[-1:], 1)
    number = size[:-1] if size[-1:] in units else size
    if not number.isdigit() or int(number) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive size such as 4M, not {text!r}")
    return int(number) * factor


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}")
    return value


class _ProgressBar:
    """Upload progress on `stream`: one line rewritten in place on a terminal; on anything
    else (a log, a CI job) a line per 10 % so that the output stays readable."""

    def __init__(
        self,
        stream: TextIO,
        *,
        done_note: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._done_note = done_note
        self._clock = clock
        self._start: tuple[float, int] | None = None
        """(time, bytes) at the first report: the rate counts this run's bytes only."""
        self._tenths = 0
        self._width = 0
        """Length of the line on the terminal (0: no line open)."""
        self.complete = False

    def __call__(self, confirmed: int, total: int) -> None:
        now = self._clock()
        percent = 100 * confirmed // total
        if self._start is None:
            self._start = (now, confirmed)
            self._tenths = percent // 10
            if not self._tty and confirmed:
                self._print(f"resuming at {percent}% ({confirmed / _MIB:.1f} MiB)")
        started, base = self._start
        elapsed = now - started
        rate = (confirmed - base) / elapsed / _MIB if elapsed > 0 else 0.0
        line = f"{percent:3d}%  {confirmed / _MIB:.1f} / {total / _MIB:.1f} MiB  {rate:.1f} MiB/s"
        if self._tty:
            self._stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
            self._stream.flush()
        elif percent // 10 > self._tenths:
            self._tenths = percent // 10
            self._print(line)
        if confirmed == total and not self.complete:
            self.complete = True
            if self._done_note:
                self._print(self._done_note)

    def end_line(self) -> None:
        """End the line being rewritten, so that what is printed next starts on its own."""
        if self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0

    def _print(self, text: str) -> None:
        self.end_line()
        print(text, file=self._stream, flush=True)
