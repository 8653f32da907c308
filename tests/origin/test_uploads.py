"""Uploads end to end on a real origin: tuspy uploads, interrupted and resumed across an origin
restart; the video is transcoded by ffmpeg, becomes ready and plays through an edge (ffprobe);
identical bytes are not transcoded twice; moderation holds and releases; the API answers only
whom it should; a non-video fails with a reason; a worker killed mid-transcode leaves its job to
another (Redis Streams); `shoal upload` prints a playable URL; the pipeline writes to S3 too."""

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from tusclient.client import TusClient

from core.config import OriginConfig, UploadsConfig
from origin.app import make_origin_app
from origin.catalog import VideoStatus
from origin.store.base import ContentStore
from origin.store.fs import FilesystemStore
from origin.store.s3 import S3Store
from origin.transcode import WORK_PREFIX
from origin.uploads import PIPELINE, VideoPipeline, install_uploads
from tests.edge.harness import Node, Served, node_config
from tests.support import uses_seaweedfs

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("uploads")]

ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
ADMIN = {"Authorization": "Bearer admin-token"}
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s portrait clip with audio, a few hundred kB."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=360x640:rate=30", "-f", "lavfi",
         "-i", "sine=frequency=440:sample_rate=48000", "-t", "3",
         "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path


class Origin:
    """An origin with uploads on 127.0.0.1; `restart` keeps its port, store and catalog."""

    def __init__(self, root: Path, store: ContentStore | None = None, **uploads: Any) -> None:
        self.root = root
        self.store = FilesystemStore(root / "store") if store is None else store
        settings: dict[str, Any] = {
            "staging_path": str(root / "uploads"),
            "catalog_path": str(root / "catalog.sqlite"),
            "tokens": ["alice:alice-token", "bob:bob-token"],
            "admin_token": "admin-token",
            "blocked_words": ["forbidden"],
            "work_path": str(root),
        }
        settings.update(uploads)
        self.config = UploadsConfig(**settings)
        self.served = Served(self._app)

    def _app(self) -> web.Application:
        app = make_origin_app(self.store, OriginConfig())
        install_uploads(app, self.store, self.config, self.root)
        return app

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def pipeline(self) -> VideoPipeline:
        assert self.served.app is not None
        return self.served.app[PIPELINE]

    async def restart(self) -> None:
        await self.served.stop()
        await self.served.start()


@asynccontextmanager
async def running(
    root: Path, store: ContentStore | None = None, **uploads: Any
) -> AsyncIterator[Origin]:
    origin = Origin(root, store, **uploads)
    await origin.served.start()
    try:
        yield origin
    finally:
        await origin.served.stop()
        origin.store.close()


def tus(origin: Origin, headers: dict[str, str] = ALICE) -> TusClient:
    return TusClient(f"{origin.url}/files/", headers=headers)


async def upload(origin: Origin, clip: Path, caption: str = "hello", **headers: str) -> str:
    """Upload `clip` whole; the upload id."""

    def run() -> str:
        uploader = tus(origin, headers or ALICE).uploader(
            file_path=str(clip), chunk_size=CHUNK, metadata={"caption": caption}
        )
        uploader.upload()
        return str(uploader.url).rsplit("/", 1)[1]

    return await asyncio.to_thread(run)


async def api(origin: Origin, path: str, headers: dict[str, str] = ALICE) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(origin.url + path, headers=headers) as response,
    ):
        body = await response.read()
        return response.status, json.loads(body) if response.content_type.endswith("json") else body


async def video_when(
    origin: Origin, upload_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    """The video an upload became, once `done` holds of it."""
    async with asyncio.timeout(timeout):
        while True:
            status, document = await api(origin, f"/api/uploads/{upload_id}")
            if status == 200 and done(document["video"]):
                video: dict[str, Any] = document["video"]
                return video
            await asyncio.sleep(0.2)


def settled(video: dict[str, Any]) -> bool:
    return str(video["status"]) in {"ready", "held", "failed", "rejected"}


def ffprobe_streams(url: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", url],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    streams: list[dict[str, Any]] = json.loads(result.stdout)["streams"]
    return streams


async def test_an_interrupted_upload_resumes_after_a_restart_and_plays_through_an_edge(
    tmp_path: Path, clip: Path
) -> None:
    async with running(tmp_path) as origin:

        def start() -> str:
            uploader = tus(origin).uploader(
                file_path=str(clip), chunk_size=CHUNK, metadata={"caption": "my first"}
            )
            for _ in range(2):
                uploader.upload_chunk()  # type: ignore[no-untyped-call]
            return str(uploader.url)

        url = await asyncio.to_thread(start)
        await origin.restart()  # mid-upload: nothing of it is lost

        def resume() -> int:
            uploader = tus(origin).uploader(file_path=str(clip), url=url, chunk_size=CHUNK)
            offset = int(uploader.offset)
            uploader.upload()
            return offset

        assert await asyncio.to_thread(resume) == 2 * CHUNK
        video = await video_when(origin, url.rsplit("/", 1)[1], settled)
        assert video["status"] == "ready", video
        assert video["caption"] == "my first" and video["creator"] == "alice"
        stored = origin.pipeline.catalog.video(video["id"])
        assert stored is not None
        assert stored.source_sha256 == hashlib.sha256(clip.read_bytes()).hexdigest()
        # The staged copy is gone once the source is in the content store.
        assert origin.store.read(f"sources/{stored.source_sha256}") == clip.read_bytes()
        edge = await Node(node_config([origin.url])).start()
        try:
            streams = await asyncio.to_thread(ffprobe_streams, edge.url + video["playback"])
        finally:
            await edge.stop()
        assert {s["codec_type"] for s in streams} == {"video", "audio"}
        assert any(s.get("height") == 640 for s in streams)


async def test_identical_bytes_are_not_transcoded_twice(tmp_path: Path, clip: Path) -> None:
    async with running(tmp_path) as origin:
        first = await video_when(origin, await upload(origin, clip), settled)
        second_upload = await upload(origin, clip, "again", **BOB)
        status, document = 0, dict[str, Any]()
        async with asyncio.timeout(30):
            while status != 200:
                status, document = await api(origin, f"/api/uploads/{second_upload}", BOB)
                await asyncio.sleep(0.1)
        second = document["video"]
        assert second["status"] == "ready"
        assert second["id"] != first["id"]
        assert second["package"] == first["package"] == first["id"]
        assert second["playback"] == first["playback"]
        # Nothing was encoded for the second video: no package of its own in the store.
        assert not list(origin.store.list(f"videos/{second['id']}/"))
        assert await origin.pipeline.queue.claim("probe", wait=0.1) is None  # no job queued


async def test_a_held_video_is_not_served_until_approved(tmp_path: Path, clip: Path) -> None:
    async with running(tmp_path) as origin:
        video = await video_when(origin, await upload(origin, clip, "this is Forbidden"), settled)
        assert video["status"] == "held" and "forbidden" in video["reason"]
        assert video["playback"] is None
        master = f"/v/{video['id']}/master.m3u8"
        status, _ = await api(origin, master)
        assert status == 404  # transcoded, but not served while held
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{origin.url}/api/admin/videos/{video['id']}/approve", headers=ALICE
            ) as response:
                assert response.status == 403  # creators cannot approve
            async with http.post(
                f"{origin.url}/api/admin/videos/{video['id']}/approve", headers=ADMIN
            ) as response:
                assert response.status == 200
                assert (await response.json())["status"] == "ready"
            async with http.post(
                f"{origin.url}/api/admin/videos/{video['id']}/reject", headers=ADMIN
            ) as response:
                assert response.status == 409  # only held videos are moderated
        status, body = await api(origin, master)
        assert status == 200 and body.startswith(b"#EXTM3U")


async def test_the_api_shows_creators_only_their_own_videos(tmp_path: Path, clip: Path) -> None:
    async with running(tmp_path, workers=0) as origin:
        upload_id = await upload(origin, clip)
        status, document = await api(origin, f"/api/uploads/{upload_id}")
        assert status == 200 and document["video"]["status"] == "uploaded"
        video_id = document["video"]["id"]
        assert (await api(origin, f"/api/videos/{video_id}", BOB))[0] == 404
        assert (await api(origin, f"/api/uploads/{upload_id}", BOB))[0] == 404
        assert (await api(origin, f"/api/videos/{video_id}", ADMIN))[0] == 200
        assert (await api(origin, f"/api/videos/{video_id}", {}))[0] == 401
        wrong = {"Authorization": "Bearer x"}
        assert (await api(origin, f"/api/videos/{video_id}", wrong))[0] == 401
        status, page = await api(origin, "/api/users/alice/videos?limit=5")
        assert status == 200 and [v["id"] for v in page["videos"]] == [video_id]
        assert (await api(origin, "/api/users/alice/videos", BOB))[0] == 404
        assert (await api(origin, "/api/users/alice/videos?limit=0"))[0] == 400
        # Not served while it waits for a worker.
        assert (await api(origin, f"/v/{video_id}/master.m3u8"))[0] == 404


async def test_a_file_that_is_not_a_video_fails_with_a_reason_and_harms_no_other(
    tmp_path: Path, clip: Path
) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("these are not moving pictures\n" * 1000)
    async with running(tmp_path) as origin:
        bad, good = await asyncio.gather(upload(origin, text, "oops"), upload(origin, clip))
        failed = await video_when(origin, bad, settled)
        assert failed["status"] == "failed"
        assert "not a video" in failed["reason"] or "media" in failed["reason"], failed
        assert (await video_when(origin, good, settled))["status"] == "ready"


@pytest.fixture
def worker_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


async def test_a_worker_killed_mid_transcode_leaves_its_job_to_another(
    tmp_path: Path, clip: Path, redis_url: str, worker_env: dict[str, str]
) -> None:
    # The origin only takes uploads; `shoal worker` processes transcode.
    async with running(tmp_path, queue_url=redis_url, reclaim_after=1.5, workers=0) as origin:
        settings = [
            f'store.path="{tmp_path / "store"}"',
            f'uploads.catalog_path="{tmp_path / "catalog.sqlite"}"',
            f'uploads.queue_url="{redis_url}"',
            "uploads.reclaim_after=1.5",
            f'uploads.work_path="{tmp_path}"',
        ]

        def start_worker(name: str) -> subprocess.Popen[bytes]:
            argv = [sys.executable, "-m", "deploy.cli", "worker", "--name", name]
            for setting in settings:
                argv += ["--set", setting]
            return subprocess.Popen(argv, env=worker_env)

        doomed = start_worker("doomed")
        upload_id = await upload(origin, clip)
        video = await video_when(origin, upload_id, lambda v: v["status"] == "processing")
        # Mid-transcode: the worker's encode directory exists (ffmpeg is starting or running).
        async with asyncio.timeout(30):
            while not list(tmp_path.glob(f"{WORK_PREFIX}*")):
                await asyncio.sleep(0.02)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        rescuer = start_worker("rescuer")
        try:
            video = await video_when(origin, upload_id, settled, timeout=90)
        finally:
            rescuer.send_signal(signal.SIGTERM)
            rescuer.wait(timeout=30)
        assert video["status"] == "ready", video
        status = origin.pipeline.catalog.video(video["id"])
        assert status is not None and status.status is VideoStatus.READY


async def test_shoal_upload_prints_a_playable_url(
    tmp_path: Path, clip: Path, worker_env: dict[str, str]
) -> None:
    env = {**worker_env, "XDG_STATE_HOME": str(tmp_path / "state")}
    async with running(tmp_path) as origin:
        argv = [
            sys.executable, "-m", "deploy.cli", "upload", str(clip), "--caption", "from the cli",
            "--origin", origin.url, "--token", "alice-token", "--chunk-size", "64K",
        ]  # fmt: skip
        done = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        stdout, stderr = await asyncio.wait_for(done.communicate(), 90)
        assert done.returncode == 0, stderr.decode()
        url = stdout.decode().strip()
        assert url.startswith(origin.url + "/v/") and url.endswith("/master.m3u8")
        assert b"100%" in stderr  # the progress bar got to the end
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            assert (await response.read()).startswith(b"#EXTM3U")


@uses_seaweedfs
async def test_the_pipeline_writes_to_an_s3_store(
    tmp_path: Path, clip: Path, s3_store: S3Store
) -> None:
    async with running(tmp_path, s3_store) as origin:
        video = await video_when(origin, await upload(origin, clip), settled)
        assert video["status"] == "ready", video
        keys = set(s3_store.list(f"videos/{video['id']}/"))
        assert f"videos/{video['id']}/master.m3u8" in keys
        assert f"videos/{video['id']}/360p/integrity.json" in keys
        status, body = await api(origin, video["playback"])
        assert status == 200 and body.startswith(b"#EXTM3U")
