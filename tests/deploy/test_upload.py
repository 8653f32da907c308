"""`shoal upload` against a real tus origin: chunks, resuming, restarts, retries, refusals, the CLI.

Each test serves `origin.tus.TusService` over an `UploadStaging` in tmp_path with aiohttp's
`AppRunner` on 127.0.0.1 (a port the kernel picked), next to a stand-in for the origin's
`GET /api/uploads/{id}` that `on_complete` feeds. The client is synchronous, so it runs in a
worker thread (`asyncio.to_thread`) while the server runs on the test's event loop. A middleware
records the tus requests and injects faults: a dropped connection, a 503, 423 or 460, a PATCH
at the wrong offset. An origin "restart" is a new staging area and service over the same
directory, listening on the same port.
"""

import argparse
import asyncio
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from deploy.upload import (
    UploadError,
    UploadResult,
    add_upload_arguments,
    default_state_file,
    run_upload,
    upload_file,
)
from origin.staging import UploadStaging
from origin.tus import CompletedUpload, TusService
from tests.edge.harness import FakeClock, listening_socket

TOKEN = "alice-token"
MAX_SIZE = 16 * 1024 * 1024
CHUNK = 64 * 1024
DAY = 86_400.0


class FakeOrigin:
    """The tus endpoints plus `GET /api/uploads/{id}`, as the origin serves them.

    A finished upload's video answers 404 for its first `hidden_polls` polls (the hand-off has
    not happened yet), then "processing" for `processing_polls` polls, then `outcome`."""

    def __init__(self, root: Path, *, max_size: int = MAX_SIZE) -> None:
        self.root = root
        self.max_size = max_size
        self.clock = FakeClock()
        self.port = 0
        self.starts = 0
        self.completed: dict[str, CompletedUpload] = {}
        self.outcome: dict[str, object] = {"status": "ready"}
        self.hidden_polls = 1
        self.processing_polls = 1
        self.polls: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every tus request."""
        self.patches: list[int] = []
        """Body length of every PATCH that reached the tus service."""
        self.checksums: list[str] = []
        self.faults: list[str | None] = []
        """What to do to the next PATCH requests, in order (see `_middleware`)."""
        self.on_patch: Callable[[], None] | None = None
        self.relative_location = False
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "FakeOrigin":
        self.staging = UploadStaging(self.root)
        self.service = TusService(
            self.staging,
            authenticate={TOKEN: "alice"}.get,
            on_complete=self._on_complete,
            max_size=self.max_size,
            clock=self.clock,
            read_timeout=5.0,
            sweep_interval=3600.0,
        )
        app = web.Application(middlewares=[self._middleware])
        self.service.add_routes(app)
        app.router.add_get("/api/uploads/{upload_id}", self._video)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        # The port it had, if it had one: a restarted origin is where clients left it.
        sock = listening_socket(self.port)
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.starts += 1
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def patched_since(self, index: int) -> int:
        """Bytes the PATCH requests from `index` on carried."""
        return sum(self.patches[index:])

    async def _on_complete(self, upload: CompletedUpload) -> None:
        self.completed[upload.upload_id] = upload

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if request.path.startswith("/files"):
            self.requests.append((request.method, request.path))
        if request.method == "PATCH":
            if self.on_patch is not None:
                self.on_patch()
            fault = self.faults.pop(0) if self.faults else None
            if fault == "drop":
                # The connection breaks mid-body, before the service sees the request.
                assert request.transport is not None
                request.transport.close()
                raise web.HTTPServiceUnavailable()  # never reaches the client
            if fault in ("503", "423", "460"):
                await request.read()
                return web.Response(status=int(fault), reason="Injected")
            if fault == "skew":
                # A real 409 from the service: the client's offset is not the server's.
                skewed = str(int(request.headers["Upload-Offset"]) + 1)
                request = request.clone(headers={**request.headers, "Upload-Offset": skewed})
            assert fault is None or fault == "skew", fault
            self.patches.append(request.content_length or 0)
            self.checksums.append(request.headers.get("Upload-Checksum", ""))
        response: web.StreamResponse = await handler(request)
        location = response.headers.get("Location")
        if self.relative_location and location:
            response.headers["Location"] = URL(location).path
        return response

    async def _video(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=401)
        upload_id = request.match_info["upload_id"]
        polls = self.polls[upload_id] = self.polls.get(upload_id, 0) + 1
        upload = self.completed.get(upload_id)
        if upload is None or polls <= self.hidden_polls:
            return web.Response(status=404)
        video_id = f"vid-{upload_id[:8]}"
        status = self.outcome["status"]
        if polls <= self.hidden_polls + self.processing_polls:
            status = "processing"
        video = {
            "id": video_id,
            "caption": upload.metadata.get("caption"),
            "reason": "",
            **self.outcome,
            "status": status,
            "playback": f"/v/{video_id}/master.m3u8" if status == "ready" else None,
        }
        return web.json_response({"upload": upload_id, "video": video})


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[FakeOrigin]:
    served = await FakeOrigin(tmp_path / "staging").start()
    yield served
    await served.stop()


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "uploads.json"


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every pause the client makes, recorded instead of slept (tests of retries stay fast)."""
    pauses: list[float] = []
    monkeypatch.setattr("deploy.upload.time.sleep", pauses.append)
    return pauses


def make_video(tmp_path: Path, size: int, name: str = "clip.mp4") -> tuple[Path, str]:
    """A file of random bytes and its SHA-256."""
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


async def upload(origin: FakeOrigin, path: Path, state_file: Path, **options: Any) -> UploadResult:
    settings: dict[str, Any] = {
        "origin": origin.url,
        "token": TOKEN,
        "caption": "hello wörld",
        "chunk_size": CHUNK,
        "state_file": state_file,
        "poll_interval": 0.02,
        "timeout": 10.0,
        **options,
    }
    return await asyncio.to_thread(lambda: upload_file(path, **settings))


def interrupt_after(chunks: int) -> Callable[[int, int], None]:
    """A progress callback that presses Ctrl-C once `chunks` chunks are confirmed."""

    def progress(confirmed: int, total: int) -> None:
        if confirmed >= chunks * CHUNK:
            raise KeyboardInterrupt

    return progress


async def interrupted_upload(origin: FakeOrigin, path: Path, state_file: Path, chunks: int) -> str:
    """Start an upload and interrupt it after `chunks` chunks; the URL in the state file."""

    def attempt() -> None:
        # Caught in the worker thread: a KeyboardInterrupt reaching the event loop would stop it.
        with pytest.raises(KeyboardInterrupt):
            upload_file(
                path,
                origin=origin.url,
                token=TOKEN,
                caption="hello wörld",
                chunk_size=CHUNK,
                state_file=state_file,
                progress=interrupt_after(chunks),
            )

    await asyncio.to_thread(attempt)
    assert origin.patched_since(0) == chunks * CHUNK
    [entry] = json.loads(state_file.read_text())["uploads"].values()
    return str(entry["url"])


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


# -- uploading ------------------------------------------------------------------------------------


async def test_uploads_a_file_in_checksummed_chunks_then_waits_until_ready(
    origin: FakeOrigin, tmp_path: Path, state_file: Path
) -> None:
    path, digest = make_video(tmp_path, 3 * 1024 * 1024)
    reports: list[tuple[int, int]] = []
    result = await upload(
        origin,
        path,
        state_file,
        chunk_size=256 * 1024,
        music="Song — Artist",
        progress=lambda confirmed, total: reports.append((confirmed, total)),
    )
    [done] = origin.completed.values()
    assert done.sha256 == digest
    assert done.metadata == {
        "filename": "clip.mp4",
        "caption": "hello wörld",
        "music": "Song — Artist",
    }
    assert result.upload_url == f"{origin.url}/files/{done.upload_id}"
    assert origin.patches == [256 * 1024] * 12
    assert all(checksum.startswith("sha256 ") for checksum in origin.checksums)
    total = 3 * 1024 * 1024
    assert reports == [(offset, total) for offset in range(0, total + 1, 256 * 1024)]
    # 404 (not handed off yet), processing, then ready: the client waited through both.
    assert origin.polls[done.upload_id] == 3
    assert result.video["status"] == "ready"
    assert result.video["playback"] == f"/v/vid-{done.upload_id[:8]}/master.m3u8"
    assert json.loads(state_file.read_text())["uploads"] == {}


async def test_a_relative_location_is_resolved_against_the_origin(
    origin: FakeOrigin, tmp_path: Path, state_file: Path
) -> None:
    origin.relative_location = True
    path, digest = make_video(tmp_path, 3 * CHUNK)
    result = await upload(origin, path, state_file)
    [done] = origin.completed.values()
    assert done.sha256 == digest
    assert result.upload_url == f"{origin.url}/files/{done.upload_id}"


async def test_no_wait_returns_once_the_bytes_are_in(
    origin: FakeOrigin, tmp_path: Path, state_file: Path
) -> None:
    origin.processing_polls = 1_000
    path, _ = make_video(tmp_path, 2 * CHUNK)
    result = await upload(origin, path, state_file, wait=False)
    [done] = origin.completed.values()
    assert result.upload_url.endswith(done.upload_id)
    assert result.video == {}  # the one look found the hand-off not done yet (404)
    assert origin.polls[done.upload_id] == 1


async def test_times_out_waiting_and_names_the_last_status(
    origin: FakeOrigin, tmp_path: Path, state_file: Path
) -> None:
    origin.processing_polls = 1_000
    path, _ = make_video(tmp_path, CHUNK)
    started = time.monotonic()
    with pytest.raises(UploadError, match=r"timed out .* \(last status: processing\)"):
        await upload(origin, path, state_file, timeout=0.3)
    assert time.monotonic() - started < 3.0


# -- resuming -------------------------------------------------------------------------------------


async def test_resumes_an_interrupted_upload_from_the_servers_offset(
    origin: FakeOrigin, tmp_path: Path, state_file: Path
) -> None:
    path, digest = make_video(tmp_path, 10 * CHUNK + 123)
    remembered: list[bool] = []

    def check_state_file() -> None:
        # The URL must be on disk before the first byte leaves: else Ctrl-C now loses it.
        if not remembered:
            [(_, patched)] = origin.requests[-1:]  # this PATCH
            text = state_file.read_text()
            remembered.append(patched in text and len(json.loads(text)["uploads"]) == 1)

    origin.on_patch = check_state_file
    url = await interrupted_upload(origin, path, state_file, chunks=3)
    assert remembered == [True]
    assert origin.completed == {}

    first_run = len(origin.patches)
    result = await upload(origin, path, state_file)
    assert result.upload_url == url
    assert origin.patched_since(first_run) == 7 * CHUNK + 123  # the rest, not the whole file
    assert ("HEAD", URL(url).path) in origin.requests
    [done] = origin.completed.values()
    assert (done.upload_id, done.sha256) == (upload_id(url), digest)
    assert done.metadata == {"filename": "clip.mp4", "caption": "hello wörld"}  # no music
    assert len(origin.staging.uploads()) == 1


@pytest.mark.parametrize("how", ["interrupted", "while-uploading"])
async def test_resumes_across_an_origin_restart(
    origin: FakeOrigin, tmp_path: Path, state_file: Path, how: str
) -> None:
    path, digest = make_video(tmp_path, 8 * CHUNK)
    port = origin.port
    if how == "interrupted":
        url = await interrupted_upload(origin, path, state_file, chunks=3)
        await origin.restart()
        patches_before = len(origin.patches)
        result = await upload(origin, path, state_file)
    else:
        # The client keeps running: its next PATCH hits the dead connection, it backs off,
        # finds the new process on the same port and asks it where the upload stands.
        loop = asyncio.get_running_loop()

        def restart_after_three_chunks(confirmed: int, total: int) -> None:
            if confirmed == 3 * CHUNK and origin.starts == 1:
                asyncio.run_coroutine_threadsafe(origin.restart(), loop).result(timeout=10)

        patches_before = 3
        result = await upload(origin, path, state_file, progress=restart_after_three_chunks)
        url = result.upload_url
    assert (origin.starts, origin.port) == (2, port)
    assert result.upload_url == url
    assert origin.patched_since(patches_before) == 5 * CHUNK
    [done] = origin.completed.values()
    assert (done.upload_id, done.sha256) == (upload_id(url), digest)
    assert result.video["status"] == "ready"


@pytest.mark.parametrize("gone", ["expired", "removed"])
async def test_a_stale_state_entry_starts_a_fresh_upload(
    origin: FakeOrigin, tmp_path: Path, state_file: Path, gone: str
) -> None:
    path, digest = make_video(tmp_path, 6 * CHUNK)
    old_url = await interrupted_upload(origin, path, state_file, chunks=2)
    if gone == "expired":
        origin.clock.advance(2 * DAY)  # the service answers 410 and removes it
    else:
        with origin.staging.claim(upload_id(old_url)) as stale:
            stale.terminate()  # the service answers 404
    first_run = len(origin.patches)
    result = await upload(origin, path, state_file)
    assert result.upload_url != old_url
    assert origin.patched_since(first_run) == 6 * CHUNK
    [done] = origin.completed.values()
    assert (done.upload_id, done.sha256) == (upload_id(result.upload_url), digest)


async def test_a_changed_file_is_a_new_upload(
    origin: FakeOrigin, tmp_path: Path, state_file: Path
) -> None:
    path, _ = make_video(tmp_path, 4 * CHUNK)
    old_url = await interrupted_upload(origin, path, state_file, chunks=2)
    path.write_bytes(os.urandom(5 * CHUNK))
    result = await upload(origin, path, state_file)
    assert result.upload_url != old_url
    assert origin.completed[upload_id(result.upload_url)].length == 5 * CHUNK


async def test_an_unreadable_state_file_only_costs_resuming(
    origin: FakeOrigin, tmp_path: Path, state_file: Path
) -> None:
    state_file.parent.mkdir(parents=True)
    state_file.write_text("{not json")
    path, digest = make_video(tmp_path, 2 * CHUNK)
    result = await upload(origin, path, state_file)
    assert origin.completed[upload_id(result.upload_url)].sha256 == digest


# -- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["drop", "503", "423", "460"])
async def test_a_failed_chunk_is_retried_after_asking_for_the_offset(
    origin: FakeOrigin, tmp_path: Path, state_file: Path, backoffs: list[float], fault: str
) -> None:
    origin.faults = [None, fault]
    path, digest = make_video(tmp_path, 4 * CHUNK)
    result = await upload(origin, path, state_file, wait=False)
    assert backoffs == [0.5]
    methods = [method for method, _ in origin.requests]
    assert methods == ["POST", "PATCH", "PATCH", "HEAD", "PATCH", "PATCH", "PATCH"]
    assert origin.patches == [CHUNK] * 4  # the faulty one never reached the service
    assert origin.completed[upload_id(result.upload_url)].sha256 == digest


async def test_an_offset_mismatch_is_resynchronized_at_once(
    origin: FakeOrigin, tmp_path: Path, state_file: Path, backoffs: list[float]
) -> None:
    origin.faults = [None, "skew"]  # the second PATCH claims the wrong offset: a real 409
    path, digest = make_video(tmp_path, 4 * CHUNK)
    result = await upload(origin, path, state_file, wait=False)
    assert backoffs == []  # the server said where it is: no reason to wait
    methods = [method for method, _ in origin.requests]
    assert methods == ["POST", "PATCH", "PATCH", "HEAD", "PATCH", "PATCH", "PATCH"]
    assert origin.completed[upload_id(result.upload_url)].sha256 == digest


async def test_backs_off_exponentially_then_gives_up_resumable(
    origin: FakeOrigin, tmp_path: Path, state_file: Path, backoffs: list[float]
) -> None:
    origin.faults = ["503"] * 10
    path, _ = make_video(tmp_path, 2 * CHUNK)
    with pytest.raises(UploadError, match=r"giving up after 3 retries: .*503"):
        await upload(origin, path, state_file, retries=3)
    assert backoffs == [0.5, 1.0, 2.0]
    assert len(origin.faults) == 6  # the first attempt and three retries
    assert origin.completed == {}
    # The upload stays resumable by a later run.
    assert len(json.loads(state_file.read_text())["uploads"]) == 1


async def test_a_confirmed_chunk_resets_the_retry_budget(
    origin: FakeOrigin, tmp_path: Path, state_file: Path, backoffs: list[float]
) -> None:
    origin.faults = ["503", None, "503", None, "503"]
    path, digest = make_video(tmp_path, 3 * CHUNK)
    result = await upload(origin, path, state_file, retries=1, wait=False)
    assert backoffs == [0.5, 0.5, 0.5]
    assert origin.completed[upload_id(result.upload_url)].sha256 == digest


async def test_a_bad_token_fails_at_once(
    origin: FakeOrigin, tmp_path: Path, state_file: Path
) -> None:
    path, _ = make_video(tmp_path, 2 * CHUNK)
    with pytest.raises(UploadError, match=r"refused the token \(401"):
        await upload(origin, path, state_file, token="stolen")
    assert origin.requests == [("POST", "/files/")]


async def test_a_file_over_the_servers_limit_is_refused_with_the_limit(
    tmp_path: Path, state_file: Path
) -> None:
    small = await FakeOrigin(tmp_path / "staging", max_size=100_000).start()
    try:
        path, _ = make_video(tmp_path, 100_001)
        with pytest.raises(UploadError, match=r"100001 bytes, .* \(100000 bytes, Tus-Max-Size\)"):
            await upload(small, path, state_file)
        assert small.patches == []
    finally:
        await small.stop()


@pytest.mark.parametrize("problem", ["missing", "empty", "directory"])
def test_the_file_is_checked_before_anything_is_sent(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "clip.mp4"
    if problem == "empty":
        path.touch()
    elif problem == "directory":
        path.mkdir()
    messages = {"missing": "no such file", "empty": "is empty", "directory": "not a regular file"}
    with pytest.raises(UploadError, match=messages[problem]):
        # Nothing listens on port 9: a request would fail differently (after retries).
        upload_file(path, origin="http://127.0.0.1:9", token=TOKEN, caption="x", retries=0)


def test_default_state_file_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_file() == tmp_path / "xdg" / "shoal" / "uploads.json"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", "relative/path")  # invalid by the XDG specification
    assert default_state_file() == tmp_path / "home" / ".local" / "state" / "shoal" / "uploads.json"


# -- the command ----------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="shoal upload")
    add_upload_arguments(parser)
    return parser.parse_args(argv)


async def run(origin: FakeOrigin, path: Path, *options: str) -> int:
    # The command polls every 0.5 s; polling itself is tested above, with upload_file.
    origin.hidden_polls = origin.processing_polls = 0
    args = parse(str(path), "--caption", "hello", "--chunk-size", "64K", *options)
    return await asyncio.to_thread(run_upload, args, default_origin=origin.url, default_token=TOKEN)


@pytest.fixture(autouse=True)
def xdg_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The command's state file goes to tmp_path, never to the real home directory."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


def test_arguments_and_their_defaults() -> None:
    args = parse("clip.mp4", "--caption", "hi", "--chunk-size", "512K")
    assert (args.file, args.caption, args.music, args.chunk_size) == (
        Path("clip.mp4"),
        "hi",
        "",
        512 * 1024,
    )
    assert (args.origin, args.token, args.no_wait, args.timeout, args.play_base) == (
        None,
        None,
        False,
        600.0,
        None,
    )
    assert parse("clip.mp4", "--caption", "hi", "--chunk-size", "2MiB").chunk_size == 2 << 20
    for bad in (["--chunk-size", "0"], ["--chunk-size", "lots"], ["--timeout", "-1"], []):
        with pytest.raises(SystemExit):
            parse("clip.mp4", *(["--caption", "hi"] if bad else []), *bad)


async def test_command_prints_the_playback_url_and_logs_progress_by_tenths(
    origin: FakeOrigin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, digest = make_video(tmp_path, 40 * CHUNK)
    assert await run(origin, path) == 0
    [done] = origin.completed.values()
    assert done.sha256 == digest
    out, err = capsys.readouterr()
    assert out == f"{origin.url}/v/vid-{done.upload_id[:8]}/master.m3u8\n"
    lines = err.splitlines()
    percents = [line.split("%")[0].strip() for line in lines if "MiB/s" in line]
    assert percents == ["10", "20", "30", "40", "50", "60", "70", "80", "90", "100"]
    assert "\r" not in err
    assert lines[-1] == "waiting for processing"


async def test_command_uses_the_play_base_and_on_a_terminal_rewrites_one_line(
    origin: FakeOrigin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    path, _ = make_video(tmp_path, 4 * CHUNK)
    assert await run(origin, path, "--play-base", "https://edge.example/") == 0
    [done] = origin.completed.values()
    assert capsys.readouterr().out == (
        f"https://edge.example/v/vid-{done.upload_id[:8]}/master.m3u8\n"
    )
    bar, note = terminal.getvalue().split("\n")[:2]
    assert bar.count("\r") == 5  # the start, then once per chunk
    assert bar.rsplit("\r", 1)[-1].startswith("100%  0.2 / 0.2 MiB")
    assert note == "waiting for processing"


@pytest.mark.parametrize(
    ("outcome", "status", "message"),
    [
        ({"status": "held", "reason": "needs review"}, 3, "held for moderation: needs review"),
        ({"status": "failed", "reason": "not a video"}, 1, "video failed: not a video"),
        ({"status": "rejected", "reason": "copyright"}, 1, "video rejected: copyright"),
    ],
)
async def test_command_reports_a_video_that_is_not_ready(
    origin: FakeOrigin,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    outcome: dict[str, object],
    status: int,
    message: str,
) -> None:
    origin.outcome = outcome
    path, _ = make_video(tmp_path, 2 * CHUNK)
    assert await run(origin, path) == status
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1] == f"shoal upload: {message}"


async def test_command_without_waiting_prints_the_upload_url_and_the_video(
    origin: FakeOrigin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    origin.hidden_polls = 0
    path, _ = make_video(tmp_path, 2 * CHUNK)
    assert await run(origin, path, "--no-wait") == 0
    [done] = origin.completed.values()
    assert capsys.readouterr().out == (
        f"{origin.url}/files/{done.upload_id}\nvideo vid-{done.upload_id[:8]}\n"
    )


async def test_command_interrupted_then_run_again_resumes(
    origin: FakeOrigin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, digest = make_video(tmp_path, 6 * CHUNK)
    real_upload_file = upload_file

    def ctrl_c_after_two_chunks(*args: Any, **options: Any) -> UploadResult:
        bar = options["progress"]

        def progress(confirmed: int, total: int) -> None:
            bar(confirmed, total)
            interrupt_after(2)(confirmed, total)

        return real_upload_file(*args, **{**options, "progress": progress})

    monkeypatch.setattr("deploy.upload.upload_file", ctrl_c_after_two_chunks)
    assert await run(origin, path) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        "shoal upload: interrupted; run the same command again to resume where it stopped"
    )
    monkeypatch.setattr("deploy.upload.upload_file", real_upload_file)
    assert await run(origin, path) == 0
    assert origin.patches == [CHUNK] * 6  # two chunks, then the other four
    [done] = origin.completed.values()
    assert done.sha256 == digest
    out, err = capsys.readouterr()
    assert out.endswith("/master.m3u8\n")
    assert "resuming at 33%" in err


async def test_command_prints_an_upload_error_and_exits_1(
    origin: FakeOrigin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(origin, tmp_path / "nothing.mp4") == 1
    assert capsys.readouterr().err == f"shoal upload: {tmp_path / 'nothing.mp4'}: no such file\n"
    assert origin.requests == []
