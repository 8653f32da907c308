"""From a finished upload to a playable video, and the API creators and moderators use.

The path of one upload:

1. `origin.tus` receives it durably and hands it to `VideoPipeline.accept` (at least once). The
   source goes into the content store under `sources/<sha256>` (so any worker, on any machine,
   can read it), the catalog records the video, and then either
   - the same bytes were packaged before: the video plays that package (deduplication: no
     second transcode) once moderation allows it, or
   - a `transcode` job is queued (`origin.jobs`: in-process, or Redis Streams).
2. A worker (`VideoPipeline.run_worker`, in the origin or in `shoal worker` processes) claims
   the job and runs `process`: ffprobe validation (a bad source fails the video with a reason),
   moderation, then one ffmpeg run (`origin.transcode`). The video turns `ready` as soon as its
   lowest rung is published (when moderation allows it), and its package grows to the full
   ladder when the run ends. A held video is transcoded too, so that a moderator can watch it,
   but stays `held`: the origin does not serve it, so no cache or feed ever sees it.
3. Every step is idempotent: a job delivered twice, or reclaimed from a worker that died
   mid-transcode, finds the video's status and does what is left. An in-process queue starts
   empty after a restart, so the origin queues again what was uploaded or processing.

API (bearer tokens: creators' from `uploads.tokens`, the moderators' `uploads.admin_token`):
`GET /api/uploads/{upload}` (the video an upload became), `GET /api/videos/{video}`,
`GET /api/users/{user}/videos?before=&limit=`, `POST /api/admin/videos/{video}/approve` and
`/reject`. A creator sees only their own videos; another's are 404, as if absent. The public
swarm API (`origin.swarms`) is installed here too: the catalog it reads lives with the pipeline.
"""

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from aiohttp import web

from core.config import ConfigError, EventsConfig, UploadsConfig
from origin.app import VISIBILITY
from origin.catalog import Catalog, InvalidTransition, Rendition, Video, VideoStatus
from origin.events import install_events
from origin.jobs import Job, JobQueue, open_queue
from origin.ladder import PackagingError
from origin.moderation import DefaultRules, Hold, ModerationCheck, Submission
from origin.samples import SAMPLE_SOURCES
from origin.staging import UploadStaging
from origin.store.base import ContentStore
from origin.swarms import add_swarm_routes, register_at_start, register_package
from origin.transcode import PackageResult, RejectedSource, probe_source, transcode
from origin.tus import CompletedUpload, TusService

log = logging.getLogger(__name__)

TRANSCODE = "transcode"
MAX_ATTEMPTS = 3
"""Deliveries of a job whose transcode fails before the video is marked failed."""
MAX_CAPTION = 2200
MAX_MUSIC = 200
SOURCE_READ_BYTES = 8 * 1024 * 1024
CLAIM_WAIT_SECONDS = 1.0


class _Stopping(Exception):
    """The process is stopping: the transcode in progress is abandoned."""


class Tokens:
    """Creators' bearer tokens, from `uploads.tokens` entries `user:token`."""

    def __init__(self, entries: list[str]) -> None:
        self._users: list[tuple[bytes, str]] = []
        for entry in entries:
            user, _, token = entry.partition(":")
            if not user or not token or not user.replace("-", "").replace("_", "").isalnum():
                raise ConfigError(
                    "uploads.tokens", f"expected 'user:token' with a plain user id, got {entry!r}"
                )
            self._users.append((token.encode(), user))

    def user_of(self, token: str) -> str | None:
        """The user whose token this is; every token is compared, in constant time each."""
        presented = token.encode()
        found = None
        for known, user in self._users:
            if hmac.compare_digest(presented, known):
                found = user
        return found


def source_key(sha256: str) -> str:
    return f"sources/{sha256}"


def playback_path(package_id: str) -> str:
    return f"/v/{package_id}/master.m3u8"


class VideoPipeline:
    """Hand-off, deduplication, jobs and the transcode worker of one origin (or worker)."""

    def __init__(
        self,
        store: ContentStore,
        catalog: Catalog,
        queue: JobQueue,
        moderation: ModerationCheck,
        *,
        work_dir: Path | None = None,
        max_duration: float = 600.0,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.queue = queue
        self.moderation = moderation
        self._work_dir = work_dir
        self._max_duration = max_duration
        self._stopping = threading.Event()
        """Set when the process stops: a transcode in progress is abandoned (its job stays
        unfinished, for another worker or the next start) rather than waited for."""

    def stop(self) -> None:
        self._stopping.set()

    def _check_stopping(self, share: float) -> None:
        if self._stopping.is_set():
            raise _Stopping()

    # ---- hand-off --------------------------------------------------------------------------

    async def accept(self, upload: CompletedUpload) -> None:
        """`on_complete` of the tus service: idempotent, as the hand-off may repeat."""
        key = source_key(upload.sha256)
        if not await asyncio.to_thread(self.store.exists, key):
            await asyncio.to_thread(self.store.put_file, key, upload.data_path)
        video = await asyncio.to_thread(self._record, upload, upload.metadata)
        if video.status is not VideoStatus.UPLOADED:
            return  # handed off before: it went on from there
        package = await asyncio.to_thread(self.catalog.find_package_by_source, upload.sha256)
        if package is not None and package != video.id:
            await asyncio.to_thread(self._reuse_package, video, package)
            log.info("video %s: same source as package %s, not transcoded", video.id, package)
            return
        await self.queue.submit(TRANSCODE, {"video": video.id})
        log.info("video %s: queued for transcoding", video.id)

    def _record(self, upload: CompletedUpload, metadata: Mapping[str, str | None]) -> Video:
        self.catalog.ensure_user(upload.user_id, upload.user_id)
        return self.catalog.create_video(
            video_id=secrets.token_hex(8),
            creator=upload.user_id,
            # Over-long texts are cut, not refused: the bytes are safely here, and a creator
            # can edit a caption; refusing would make the hand-off fail forever.
            caption=(metadata.get("caption") or "")[:MAX_CAPTION],
            music=(metadata.get("music") or "")[:MAX_MUSIC],
            source_sha256=upload.sha256,
            upload_id=upload.upload_id,
            length=upload.length,
        )

    def _reuse_package(self, video: Video, package: str) -> None:
        self.catalog.set_package(video.id, package)
        self.catalog.set_status(video.id, VideoStatus.PROCESSING)
        self._conclude(video.id, self._review(video))

    def _review(self, video: Video) -> Hold | None:
        verdict = self.moderation.review(
            Submission(video.caption, video.music, video.creator, video.source_sha256)
        )
        return verdict if isinstance(verdict, Hold) else None

    def _conclude(self, video_id: str, hold: Hold | None) -> None:
        current = self.catalog.video(video_id)
        if current is None:
            return
        if hold is not None:
            self.catalog.set_status(video_id, VideoStatus.HELD, reason=hold.reason)
        elif current.status is not VideoStatus.READY:
            self.catalog.set_status(video_id, VideoStatus.READY)

    # ---- the worker ------------------------------------------------------------------------

    async def run_worker(self, name: str, stop: asyncio.Event) -> None:
        """Claim and process jobs until `stop` is set."""
        while not stop.is_set():
            job = await self.queue.claim(name, wait=CLAIM_WAIT_SECONDS)
            if job is None:
                continue
            try:
                await self.process(job)
            except Exception:
                log.exception("job %s failed; it goes back to the queue", job.id)
                await self.queue.release(job)

    async def process(self, job: Job) -> None:
        """Run one transcode job to its end (ack), or give it back (release)."""
        video_id = job.payload.get("video", "")
        video = await asyncio.to_thread(self.catalog.video, video_id)
        if job.kind != TRANSCODE or video is None:
            log.warning("job %s: nothing to do (%s %r)", job.id, job.kind, video_id)
            await self.queue.ack(job)
            return
        done = (VideoStatus.READY, VideoStatus.HELD, VideoStatus.REJECTED)
        if video.status in done or video.package_id != video.id:
            await self.queue.ack(job)  # a repeated delivery of a finished job
            return
        outcome = await asyncio.to_thread(self._transcode, video, job.deliveries)
        if outcome == "retry":
            await self.queue.release(job)
        else:
            await self.queue.ack(job)

    def _transcode(self, video: Video, attempt: int) -> str:
        """The blocking part of a job, in a thread: "done" or "retry"."""
        self.catalog.set_status(video.id, VideoStatus.PROCESSING)
        hold = self._review(video)
        with tempfile.TemporaryDirectory(prefix="shoal-source-", dir=self._work_dir) as work:
            source = Path(work) / "source"
            self._fetch_source(video.source_sha256, source)
            try:
                info = probe_source(source, max_duration=self._max_duration)
            except RejectedSource as exc:
                log.info("video %s rejected: %s", video.id, exc)
                self.catalog.set_status(video.id, VideoStatus.FAILED, reason=str(exc))
                return "done"
            self.catalog.set_media_info(
                video.id, duration=info.duration, width=info.width, height=info.height
            )

            def lowest_ready(so_far: PackageResult) -> None:
                # Playable now: viewers need not wait for the higher rungs.
                self._publish(so_far)
                if hold is None:
                    self._conclude(video.id, None)

            try:
                result = transcode(
                    source,
                    self.store,
                    video.id,
                    on_lowest_ready=lowest_ready,
                    progress=self._check_stopping,
                    info=info,
                    work_dir=self._work_dir,
                )
            except _Stopping:
                return "retry"
            except PackagingError as exc:
                if attempt < MAX_ATTEMPTS:
                    log.warning("video %s: transcode failed, will retry: %s", video.id, exc)
                    return "retry"
                self.catalog.set_status(
                    video.id, VideoStatus.FAILED, reason=f"transcoding failed: {exc}"[:500]
                )
                return "done"
        self._publish(result)
        self._conclude(video.id, hold)
        log.info("video %s: %s", video.id, "held" if hold else "ready")
        return "done"

    def _publish(self, result: PackageResult) -> None:
        self.catalog.publish_package(
            result.package_id,
            [
                Rendition(
                    rung.name,
                    rung.width,
                    rung.height,
                    rung.bandwidth,
                    rung.codecs,
                    rung.segment_count,
                    rung.average_bandwidth,
                )
                for rung in result.rungs
            ],
        )
        # Before the video can turn ready: a tracker in allow-list mode admits its peers.
        register_package(self.store, self.catalog, result.package_id)

    def _fetch_source(self, sha256: str, destination: Path) -> None:
        key = source_key(sha256)
        size = self.store.stat(key).size
        with destination.open("wb") as file:
            for start in range(0, size, SOURCE_READ_BYTES):
                file.write(self.store.read(key, start, min(SOURCE_READ_BYTES, size - start)))

    # ---- moderation --------------------------------------------------------------------------

    def approve(self, video_id: str) -> Video:
        return self.catalog.set_status(video_id, VideoStatus.READY)

    def reject(self, video_id: str, reason: str) -> Video:
        return self.catalog.set_status(video_id, VideoStatus.REJECTED, reason=reason)


def default_moderation(config: UploadsConfig) -> ModerationCheck:
    try:
        return DefaultRules(config.blocked_words, config.blocked_hashes)
    except ValueError as exc:
        raise ConfigError("uploads.blocked_hashes", str(exc)) from exc


async def requeue_unfinished(pipeline: VideoPipeline) -> int:
    """Queue again the videos whose job an in-process queue lost when the process stopped."""
    queued = 0
    for status in (VideoStatus.UPLOADED, VideoStatus.PROCESSING):
        for video in await asyncio.to_thread(pipeline.catalog.videos_with_status, status):
            if video.package_id == video.id:
                await pipeline.queue.submit(TRANSCODE, {"video": video.id})
                queued += 1
    return queued


def catalog_file(config: UploadsConfig, data_dir: Path) -> Path:
    return Path(config.catalog_path) if config.catalog_path else data_dir / "catalog.sqlite"


def open_pipeline(store: ContentStore, config: UploadsConfig, data_dir: Path) -> VideoPipeline:
    """The pipeline of the configured catalog and queue over `store`."""
    catalog_path = catalog_file(config, data_dir)
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        queue = open_queue(config.queue_url or None, reclaim_after=config.reclaim_after)
    except ValueError as exc:
        raise ConfigError("uploads.queue_url", str(exc)) from exc
    return VideoPipeline(
        store,
        Catalog(catalog_path),
        queue,
        default_moderation(config),
        work_dir=Path(config.work_path) if config.work_path else None,
        max_duration=config.max_duration,
    )


async def run_workers(pipeline: VideoPipeline, count: int, name: str) -> AsyncIterator[None]:
    """Run `count` workers while the caller's context lasts (a cleanup context's shape)."""
    stop = asyncio.Event()
    tasks = [
        asyncio.get_running_loop().create_task(pipeline.run_worker(f"{name}-{n}", stop))
        for n in range(count)
    ]
    try:
        yield
    finally:
        stop.set()
        pipeline.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


def install_uploads(
    app: web.Application,
    store: ContentStore,
    config: UploadsConfig,
    data_dir: Path,
    events: EventsConfig | None = None,
) -> VideoPipeline:
    """Give the origin `app` uploads (tus under /files/), the API, and its own workers, and
    the viewer events API (`origin.events`), whose likes and follows live in the catalog."""
    tokens = Tokens(config.tokens)
    pipeline = open_pipeline(store, config, data_dir)
    staging_root = Path(config.staging_path) if config.staging_path else data_dir / "uploads"
    staging = UploadStaging(staging_root)
    tus = TusService(
        staging,
        authenticate=tokens.user_of,
        on_complete=pipeline.accept,
        max_size=config.max_bytes,
        expiration_seconds=config.expiration,
        discard_after_hand_off=True,
    )
    tus.add_routes(app)
    add_api_routes(app, pipeline, tokens, config.admin_token)
    add_swarm_routes(app, pipeline.catalog)
    app[VISIBILITY] = pipeline.catalog.package_visible

    def package_of(video_id: str) -> str:
        # Viewers name what they play: an uploaded video's id, or a sample's (its package).
        video = pipeline.catalog.video(video_id)
        return video.package_id if video is not None and video.package_id else video_id

    install_events(
        app,
        events or EventsConfig(),
        data_dir,
        catalog_file(config, data_dir),
        authenticate=tokens.user_of,
        package_of=package_of,
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        samples = [sample.video_id for sample in SAMPLE_SOURCES]
        registered = await asyncio.to_thread(register_at_start, store, pipeline.catalog, samples)
        log.info("swarms of %d packages registered", registered)
        if not config.queue_url:
            # The in-process queue starts empty: what was queued or running before is redone.
            requeued = await requeue_unfinished(pipeline)
            if requeued:
                log.info("%d unfinished videos queued again", requeued)
        await tus.resume_pending()
        async for _ in run_workers(pipeline, config.workers, f"origin-{os.getpid()}"):
            yield
        await pipeline.queue.close()
        pipeline.catalog.close()

    app.cleanup_ctx.append(lifecycle)
    return pipeline


# ---- the API -----------------------------------------------------------------------------------

PIPELINE = web.AppKey("pipeline", VideoPipeline)
TOKENS = web.AppKey("tokens", Tokens)
ADMIN_TOKEN = web.AppKey("admin_token", str)
MAX_PAGE = 100


def add_api_routes(
    app: web.Application, pipeline: VideoPipeline, tokens: Tokens, admin_token: str
) -> None:
    app[PIPELINE] = pipeline
    app[TOKENS] = tokens
    app[ADMIN_TOKEN] = admin_token
    app.router.add_get("/api/uploads/{upload}", _upload)
    app.router.add_get("/api/videos/{video}", _video)
    app.router.add_get("/api/users/{user}/videos", _videos_of)
    app.router.add_post("/api/admin/videos/{video}/approve", _approve)
    app.router.add_post("/api/admin/videos/{video}/reject", _reject)


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise web.HTTPUnauthorized(
            text="a bearer token is required\n",
            headers={"WWW-Authenticate": 'Bearer realm="shoal"'},
        )
    return token.strip()


def _caller(request: web.Request) -> tuple[str | None, bool]:
    """(user, whether a moderator) of the request's token; 401 for an unknown one."""
    token = _bearer(request)
    admin = request.app[ADMIN_TOKEN]
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return None, True
    user = request.app[TOKENS].user_of(token)
    if user is None:
        raise web.HTTPUnauthorized(
            text="unknown token\n", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    return user, False


def _visible_to(request: web.Request, video: Video | None) -> Video:
    user, admin = _caller(request)
    if video is None or not (admin or video.creator == user):
        raise web.HTTPNotFound(text="no such video\n")
    return video


def _describe(pipeline: VideoPipeline, video: Video) -> dict[str, object]:
    package = pipeline.catalog.package(video.package_id)
    ready = video.status is VideoStatus.READY
    return {
        "id": video.id,
        "status": video.status.value,
        "reason": video.reason,
        "creator": video.creator,
        "caption": video.caption,
        "music": video.music,
        "created_at": video.created_at,
        "updated_at": video.updated_at,
        "duration": video.duration,
        "width": video.width,
        "height": video.height,
        "package": video.package_id,
        "playback": playback_path(video.package_id) if ready else None,
        "poster": f"/v/{video.package_id}/poster.jpg" if ready else None,
        "renditions": [
            {"name": r.name, "width": r.width, "height": r.height, "bandwidth": r.bandwidth}
            for r in (package.renditions if package else ())
        ],
    }


def _json(document: object) -> web.Response:
    return web.json_response(document, headers={"Cache-Control": "no-store"})


async def _upload(request: web.Request) -> web.Response:
    pipeline = request.app[PIPELINE]
    video = await asyncio.to_thread(pipeline.catalog.video_of_upload, request.match_info["upload"])
    video = _visible_to(request, video)
    return _json({"upload": request.match_info["upload"], "video": _describe(pipeline, video)})


async def _video(request: web.Request) -> web.Response:
    pipeline = request.app[PIPELINE]
    video = _visible_to(request, pipeline.catalog.video(request.match_info["video"]))
    return _json(_describe(pipeline, video))


async def _videos_of(request: web.Request) -> web.Response:
    user, admin = _caller(request)
    creator = request.match_info["user"]
    if not admin and creator != user:
        raise web.HTTPNotFound(text="no such user\n")
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError as exc:
        raise web.HTTPBadRequest(text="limit must be an integer\n") from exc
    if not 1 <= limit <= MAX_PAGE:
        raise web.HTTPBadRequest(text=f"limit must be 1 to {MAX_PAGE}\n")
    pipeline = request.app[PIPELINE]
    try:
        videos = pipeline.catalog.videos_of(
            creator, limit=limit, before=request.query.get("before") or None
        )
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from exc
    page = [_describe(pipeline, video) for video in videos]
    return _json({"videos": page, "next": videos[-1].id if len(videos) == limit else None})


async def _moderate(request: web.Request, decide: Callable[[str], Video]) -> web.Response:
    _, admin = _caller(request)
    if not request.app[ADMIN_TOKEN]:
        raise web.HTTPForbidden(text="moderation is disabled (no uploads.admin_token)\n")
    if not admin:
        raise web.HTTPForbidden(text="moderators only\n")
    pipeline = request.app[PIPELINE]
    video_id = request.match_info["video"]
    current = pipeline.catalog.video(video_id)
    if current is None:
        raise web.HTTPNotFound(text="no such video\n")
    if current.status is not VideoStatus.HELD:
        raise web.HTTPConflict(text=f"video is {current.status.value}, not held\n")
    try:
        video = decide(video_id)
    except InvalidTransition as exc:
        raise web.HTTPConflict(text=f"{exc}\n") from exc
    return _json(_describe(pipeline, video))


async def _approve(request: web.Request) -> web.Response:
    return await _moderate(request, request.app[PIPELINE].approve)


async def _reject(request: web.Request) -> web.Response:
    reason = "rejected by a moderator"
    if request.can_read_body:
        with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
            document = json.loads(await request.content.read(4096))
            if isinstance(document, dict) and isinstance(document.get("reason"), str):
                reason = document["reason"][:500]
    pipeline = request.app[PIPELINE]
    return await _moderate(request, lambda video_id: pipeline.reject(video_id, reason))
