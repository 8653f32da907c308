"""The origin's metadata catalog: users, videos, their lifecycle and their published packages.

The content store holds bytes; this catalog holds what those bytes mean. A video is created
`uploaded`, goes through `processing` (packaging, moderation) and ends `ready` (playable), `held`
(awaiting review), `failed` (may be retried) or `rejected`. `ALLOWED_TRANSITIONS` is the whole
state machine; a forbidden move raises `InvalidTransition` and changes nothing.

Videos play packages (an HLS ladder in the store under the package id). A package is made from
one video's source and carries that video's id (its *original*); a later upload of the same
bytes can play the existing package instead of being encoded again (`find_package_by_source`,
`set_package`). A package counts as published once it has renditions, and a video can only be
`ready` or `held` while the package it plays is published, so nothing visible ever points at a
ladder that is not in the store.

Swarms: the P2P tracker swarm (p2p-media-loader info_hash) of each rendition of each package,
recorded by `origin.swarms` from the package's master playlist. They are keyed by package id
but not tied to the packages table: the sample library's videos have swarms and no rows.

Why SQLite: one origin owns the catalog, the data is small and relational, and a single file in
WAL mode gives transactions, crash safety and concurrent readers with no server to run. One
connection is shared by every thread behind a lock (`check_same_thread=False`): the catalog is
called from request handlers and worker threads alike, and SQLite serialises writers anyway.
Schema changes are a list of migrations applied in order, the count kept in `PRAGMA
user_version`.
"""

import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar

_T = TypeVar("_T")


class VideoStatus(StrEnum):
    UPLOADED = "uploaded"
    PROCESSING = "processing"
    READY = "ready"
    HELD = "held"
    FAILED = "failed"
    REJECTED = "rejected"


ALLOWED_TRANSITIONS: Mapping[VideoStatus, frozenset[VideoStatus]] = MappingProxyType(
    {
        VideoStatus.UPLOADED: frozenset({VideoStatus.PROCESSING}),
        # processing -> processing: a worker that takes over a stalled job restarts the step.
        VideoStatus.PROCESSING: frozenset(
            {VideoStatus.PROCESSING, VideoStatus.READY, VideoStatus.HELD, VideoStatus.FAILED}
        ),
        VideoStatus.READY: frozenset(),
        VideoStatus.HELD: frozenset({VideoStatus.READY, VideoStatus.REJECTED}),
        VideoStatus.FAILED: frozenset({VideoStatus.PROCESSING}),
        VideoStatus.REJECTED: frozenset(),
    }
)

# Statuses in which a video is (or may become, on review) visible: its package must be published.
_NEEDS_PUBLISHED = frozenset({VideoStatus.READY, VideoStatus.HELD})

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_CAPTION = 2200
MAX_MUSIC = 200
MAX_USER_NAME = 200
INFO_HASH_LENGTH = 20


class CatalogError(Exception):
    """Base of the catalog's refusals."""


class InvalidTransition(CatalogError):
    """The state machine forbids moving this video from its current status to the wanted one."""

    def __init__(self, video_id: str, current: VideoStatus, wanted: VideoStatus) -> None:
        super().__init__(f"video {video_id!r} cannot go from {current} to {wanted}")
        self.video_id = video_id
        self.current = current
        self.wanted = wanted


class NotPublished(CatalogError):
    """The operation needs a published package (one with renditions) and this one is not."""


class NotFound(CatalogError, LookupError):
    """No such video (or no original video for a package)."""


class Conflict(CatalogError):
    """The write contradicts what is stored: an id already taken, an upload of another user."""


@dataclass(frozen=True)
class User:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True)
class Video:
    id: str
    creator: str
    caption: str
    music: str
    source_sha256: str
    package_id: str
    status: VideoStatus
    reason: str
    created_at: float
    updated_at: float
    duration: float | None
    width: int | None
    height: int | None


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int
    height: int
    bandwidth: int
    codecs: str
    segment_count: int
    average_bandwidth: int | None = None


@dataclass(frozen=True)
class Package:
    id: str
    published_at: float
    renditions: tuple[Rendition, ...]


@dataclass(frozen=True)
class Swarm:
    """The tracker swarm of one rendition of a package."""

    info_hash: str
    package_id: str
    rendition: str


# Each entry is one schema version; never edit a released one, append a new one.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE users (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        # seq orders videos by creation (newest first pages) whatever the clock says;
        # changed orders them by last change (oldest first work lists).
        """CREATE TABLE videos (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            creator TEXT NOT NULL,
            caption TEXT NOT NULL,
            music TEXT NOT NULL,
            source_sha256 TEXT NOT NULL,
            package_id TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('uploaded', 'processing', 'ready', 'held', 'failed', 'rejected')),
            reason TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            changed INTEGER NOT NULL,
            duration REAL,
            width INTEGER,
            height INTEGER,
            upload_id TEXT UNIQUE,
            length INTEGER,
            CHECK ((upload_id IS NULL) = (length IS NULL))
        )""",
        "CREATE INDEX videos_by_creator ON videos (creator, seq)",
        "CREATE INDEX videos_by_status ON videos (status, changed)",
        "CREATE INDEX videos_by_source ON videos (source_sha256)",
        "CREATE INDEX videos_by_package ON videos (package_id, status)",
        "CREATE UNIQUE INDEX videos_by_change ON videos (changed)",
        """CREATE TABLE packages (
            id TEXT PRIMARY KEY REFERENCES videos (id),
            published_at REAL NOT NULL
        )""",
        """CREATE TABLE renditions (
            package_id TEXT NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            name TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            bandwidth INTEGER NOT NULL,
            average_bandwidth INTEGER,
            codecs TEXT NOT NULL,
            segment_count INTEGER NOT NULL,
            PRIMARY KEY (package_id, position),
            UNIQUE (package_id, name)
        )""",
    ),
    (
        """CREATE TABLE swarms (
            info_hash TEXT PRIMARY KEY,
            package_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            rendition TEXT NOT NULL,
            UNIQUE (package_id, position)
        )""",
    ),
)

_VIDEO_COLUMNS = (
    "id, creator, caption, music, source_sha256, package_id, status, reason, "
    "created_at, updated_at, duration, width, height"
)


def _check_id(what: str, value: object) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{what} must be 1 to 64 characters of A-Z a-z 0-9 _ -, not {value!r}")
    return value


def _check_text(what: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters, more than {limit}")
    return value


def _check_positive_int(what: str, value: object) -> int:
    # bool is an int subclass; True as a width is a bug, not a 1-pixel video.
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


def _check_limit(limit: int) -> int:
    return _check_positive_int("limit", limit)


def _check_rendition(rendition: Rendition) -> None:
    _check_id("rendition name", rendition.name)
    for what in ("width", "height", "bandwidth", "segment_count"):
        _check_positive_int(f"rendition {rendition.name} {what}", getattr(rendition, what))
    if rendition.average_bandwidth is not None:
        _check_positive_int(
            f"rendition {rendition.name} average_bandwidth", rendition.average_bandwidth
        )
    if not isinstance(rendition.codecs, str) or not rendition.codecs:
        raise ValueError(f"rendition {rendition.name} codecs must be a non-empty string")


def _video(row: sqlite3.Row) -> Video:
    return Video(
        id=row["id"],
        creator=row["creator"],
        caption=row["caption"],
        music=row["music"],
        source_sha256=row["source_sha256"],
        package_id=row["package_id"],
        status=VideoStatus(row["status"]),
        reason=row["reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        duration=row["duration"],
        width=row["width"],
        height=row["height"],
    )


class Catalog:
    """The catalog in one SQLite database file (or `":memory:"`); safe to share across threads."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # isolation_level=None: no implicit transactions; every write opens its own with
        # BEGIN IMMEDIATE, so it takes the write lock up front instead of failing on upgrade.
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=10.0
        )
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL loses no committed data on a crash, only on power loss.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(_MIGRATIONS):
                raise CatalogError(
                    f"catalog schema version {version} is newer than this code knows "
                    f"({len(_MIGRATIONS)})"
                )
            for number, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CatalogError("the catalog is closed")
        return self._conn

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._connection().execute(sql, params).fetchall()

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` in one write transaction: all of it is committed, or none of it."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    # Users

    def ensure_user(self, user_id: str, name: str) -> None:
        """Create the user, or rename it if it exists (its creation time is kept)."""
        _check_id("user id", user_id)
        _check_text("user name", name, MAX_USER_NAME)
        now = self._clock()
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO users (id, name, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                (user_id, name, now),
            )
        )

    def user(self, user_id: str) -> User | None:
        rows = self._read("SELECT id, name, created_at FROM users WHERE id = ?", (user_id,))
        return User(rows[0]["id"], rows[0]["name"], rows[0]["created_at"]) if rows else None

    # Videos

    def create_video(
        self,
        *,
        video_id: str,
        creator: str,
        caption: str,
        music: str,
        source_sha256: str,
        upload_id: str | None = None,
        length: int | None = None,
    ) -> Video:
        """A new `uploaded` video playing its own (not yet published) package.

        With `upload_id` (and the upload's `length` in bytes), creation is idempotent: a retry
        for an upload that already became a video returns that video, whatever `video_id` it
        proposes, so a client that lost the answer cannot create a duplicate. The same upload id
        from another creator, or with another length, is a `Conflict`.
        """
        _check_id("video id", video_id)
        _check_id("creator", creator)
        _check_text("caption", caption, MAX_CAPTION)
        _check_text("music", music, MAX_MUSIC)
        if not isinstance(source_sha256, str) or not _SHA256.fullmatch(source_sha256):
            raise ValueError(f"source_sha256 must be 64 lowercase hex digits: {source_sha256!r}")
        if (upload_id is None) != (length is None):
            raise ValueError("upload_id and length go together")
        if upload_id is not None:
            _check_id("upload id", upload_id)
            if not isinstance(length, int) or isinstance(length, bool) or length < 0:
                raise ValueError(f"length must be a non-negative integer, not {length!r}")
        now = self._clock()

        def create(conn: sqlite3.Connection) -> Video:
            if upload_id is not None:
                rows = conn.execute(
                    f"SELECT {_VIDEO_COLUMNS}, length FROM videos WHERE upload_id = ?",
                    (upload_id,),
                ).fetchall()
                if rows:
                    if rows[0]["creator"] != creator:
                        raise Conflict(f"upload {upload_id!r} belongs to another user")
                    if rows[0]["length"] != length:
                        raise Conflict(
                            f"upload {upload_id!r} was {rows[0]['length']} bytes, not {length}"
                        )
                    return _video(rows[0])
            if conn.execute("SELECT 1 FROM videos WHERE id = ?", (video_id,)).fetchone():
                raise Conflict(f"video {video_id!r} already exists")
            conn.execute(
                "INSERT INTO videos (id, creator, caption, music, source_sha256, package_id, "
                "status, reason, created_at, updated_at, changed, upload_id, length) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, '', ?, ?, "
                "(SELECT COALESCE(MAX(changed), 0) + 1 FROM videos), ?, ?)",
                (
                    video_id,
                    creator,
                    caption,
                    music,
                    source_sha256,
                    video_id,
                    VideoStatus.UPLOADED.value,
                    now,
                    now,
                    upload_id,
                    length,
                ),
            )
            return self._get(conn, video_id)

        return self._write(create)

    @staticmethod
    def _find(conn: sqlite3.Connection, video_id: str) -> Video | None:
        row = conn.execute(
            f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE id = ?", (video_id,)
        ).fetchone()
        return _video(row) if row else None

    @classmethod
    def _get(cls, conn: sqlite3.Connection, video_id: str) -> Video:
        video = cls._find(conn, video_id)
        if video is None:
            raise NotFound(f"no video {video_id!r}")
        return video

    @staticmethod
    def _published(conn: sqlite3.Connection, package_id: str) -> bool:
        return (
            conn.execute("SELECT 1 FROM packages WHERE id = ?", (package_id,)).fetchone()
            is not None
        )

    def _update(
        self, conn: sqlite3.Connection, video_id: str, assignments: str, params: Sequence[Any]
    ) -> Video:
        conn.execute(
            f"UPDATE videos SET {assignments}, updated_at = ?, "
            "changed = (SELECT MAX(changed) + 1 FROM videos) WHERE id = ?",
            (*params, self._clock(), video_id),
        )
        return self._get(conn, video_id)

    def video(self, video_id: str) -> Video | None:
        rows = self._read(f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE id = ?", (video_id,))
        return _video(rows[0]) if rows else None

    def video_of_upload(self, upload_id: str) -> Video | None:
        """The video that the upload `upload_id` became, if any."""
        rows = self._read(f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE upload_id = ?", (upload_id,))
        return _video(rows[0]) if rows else None

    def package_visible(self, package_id: str) -> bool | None:
        """Whether the package may be served: None when no video plays it, True when some video
        playing it is ready, False otherwise (all of them processing, held, rejected, ...)."""
        rows = self._read(
            "SELECT MAX(status = 'ready') AS ready FROM videos WHERE package_id = ?",
            (package_id,),
        )
        ready = rows[0]["ready"]
        return None if ready is None else bool(ready)

    def videos_of(self, creator: str, *, limit: int = 50, before: str | None = None) -> list[Video]:
        """The creator's videos, newest first; `before` is the last id of the previous page."""
        _check_limit(limit)
        with self._lock:
            conn = self._connection()
            # Keyset pagination on the creation sequence: pages stay consistent while new
            # videos arrive, and each page is one index range scan however deep it is.
            after_seq = ""
            params: list[Any] = [creator]
            if before is not None:
                row = conn.execute(
                    "SELECT seq FROM videos WHERE id = ? AND creator = ?", (before, creator)
                ).fetchone()
                if row is None:
                    raise ValueError(f"{before!r} is not a video of {creator!r}")
                after_seq = " AND seq < ?"
                params.append(row["seq"])
            rows = conn.execute(
                f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE creator = ?{after_seq} "
                "ORDER BY seq DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [_video(row) for row in rows]

    def videos_with_status(self, status: VideoStatus, *, limit: int = 100) -> list[Video]:
        """Videos in `status`, least recently changed first (the longest waiting work first)."""
        _check_limit(limit)
        rows = self._read(
            f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE status = ? ORDER BY changed LIMIT ?",
            (VideoStatus(status).value, limit),
        )
        return [_video(row) for row in rows]

    def set_status(self, video_id: str, status: VideoStatus, *, reason: str = "") -> Video:
        """Move the video to `status` (with a `reason` for people, e.g. why it failed).

        A move `ALLOWED_TRANSITIONS` forbids raises `InvalidTransition`; `ready` and `held`
        raise `NotPublished` unless the package the video plays is published. Either way
        nothing changes.
        """
        wanted = VideoStatus(status)
        if not isinstance(reason, str):
            raise ValueError("reason must be a string")

        def move(conn: sqlite3.Connection) -> Video:
            video = self._get(conn, video_id)
            if wanted not in ALLOWED_TRANSITIONS[video.status]:
                raise InvalidTransition(video_id, video.status, wanted)
            if wanted in _NEEDS_PUBLISHED and not self._published(conn, video.package_id):
                raise NotPublished(
                    f"video {video_id!r} cannot be {wanted}: package {video.package_id!r} "
                    "is not published"
                )
            return self._update(conn, video_id, "status = ?, reason = ?", (wanted.value, reason))

        return self._write(move)

    def set_media_info(self, video_id: str, *, duration: float, width: int, height: int) -> Video:
        """Record what probing the source found."""
        if (
            not isinstance(duration, int | float)
            or isinstance(duration, bool)
            or not math.isfinite(duration)
            or duration <= 0
        ):
            raise ValueError(f"duration must be a positive number of seconds, not {duration!r}")
        _check_positive_int("width", width)
        _check_positive_int("height", height)
        return self._write(
            lambda conn: self._update(
                conn,
                video_id,
                "duration = ?, width = ?, height = ?",
                (float(duration), width, height),
            )
        )

    def set_package(self, video_id: str, package_id: str) -> Video:
        """Make the video play `package_id`: a published package (e.g. found by source), or the
        video's own id (its own ladder, to be published). While the video is ready or held the
        package must be published, so a visible video never plays a missing ladder."""
        _check_id("package id", package_id)

        def point(conn: sqlite3.Connection) -> Video:
            video = self._get(conn, video_id)
            published = self._published(conn, package_id)
            if package_id != video_id and not published:
                raise NotPublished(f"package {package_id!r} is not published")
            if video.status in _NEEDS_PUBLISHED and not published:
                raise NotPublished(
                    f"video {video_id!r} is {video.status}: its package must be published"
                )
            return self._update(conn, video_id, "package_id = ?", (package_id,))

        return self._write(point)

    # Packages

    def publish_package(self, package_id: str, renditions: Sequence[Rendition]) -> Package:
        """Publish (or republish) the package with exactly these renditions, in this order.

        Only an original publishes: `package_id` must be the id of an existing video, the one
        whose source the ladder was made from (`NotFound` otherwise). Call it once the ladder is
        in the store; all the package's renditions are replaced in one transaction.
        """
        _check_id("package id", package_id)
        renditions = tuple(renditions)
        if not renditions:
            raise ValueError("a package needs at least one rendition")
        for rendition in renditions:
            _check_rendition(rendition)
        names = [rendition.name for rendition in renditions]
        if len(set(names)) != len(names):
            raise ValueError(f"rendition names repeat: {names}")
        now = self._clock()

        def publish(conn: sqlite3.Connection) -> Package:
            if self._find(conn, package_id) is None:
                raise NotFound(f"no original video {package_id!r} for this package")
            conn.execute(
                "INSERT INTO packages (id, published_at) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET published_at = excluded.published_at",
                (package_id, now),
            )
            conn.execute("DELETE FROM renditions WHERE package_id = ?", (package_id,))
            conn.executemany(
                "INSERT INTO renditions (package_id, position, name, width, height, bandwidth, "
                "average_bandwidth, codecs, segment_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        package_id,
                        position,
                        r.name,
                        r.width,
                        r.height,
                        r.bandwidth,
                        r.average_bandwidth,
                        r.codecs,
                        r.segment_count,
                    )
                    for position, r in enumerate(renditions)
                ],
            )
            return Package(package_id, now, renditions)

        return self._write(publish)

    def package(self, package_id: str) -> Package | None:
        """The published package, or None (also before it is published)."""
        with self._lock:
            conn = self._connection()
            row = conn.execute(
                "SELECT published_at FROM packages WHERE id = ?", (package_id,)
            ).fetchone()
            if row is None:
                return None
            rows = conn.execute(
                "SELECT name, width, height, bandwidth, codecs, segment_count, average_bandwidth "
                "FROM renditions WHERE package_id = ? ORDER BY position",
                (package_id,),
            ).fetchall()
        return Package(package_id, row["published_at"], tuple(Rendition(*r) for r in rows))

    def find_package_by_source(self, sha256: str) -> str | None:
        """A published package encoded from a source with this SHA-256, whatever the status of
        its video (its bytes are the same; each video's own status governs its visibility).
        The earliest published one, so every duplicate converges on the same package."""
        rows = self._read(
            "SELECT packages.id FROM packages JOIN videos ON videos.id = packages.id "
            "WHERE videos.source_sha256 = ? ORDER BY packages.published_at, packages.id LIMIT 1",
            (sha256,),
        )
        return rows[0]["id"] if rows else None

    # Swarms

    def set_swarms(self, package_id: str, swarms: Sequence[tuple[str, str]]) -> None:
        """Make `swarms`, (rendition, info_hash) pairs in the master's order, the package's
        swarms, replacing what it had (a package made again has other rates, so other hashes).

        Two renditions hashing alike share one swarm in the browser as well: the first keeps
        the info_hash. An info_hash another package holds raises `Conflict`.
        """
        _check_id("package id", package_id)
        rows: list[tuple[str, str, int, str]] = []
        for rendition, info_hash in swarms:
            _check_id("rendition name", rendition)
            if not isinstance(info_hash, str) or len(info_hash) != INFO_HASH_LENGTH:
                raise ValueError(f"an info_hash is {INFO_HASH_LENGTH} characters: {info_hash!r}")
            if all(row[0] != info_hash for row in rows):
                rows.append((info_hash, package_id, len(rows), rendition))

        def replace(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM swarms WHERE package_id = ?", (package_id,))
            try:
                conn.executemany(
                    "INSERT INTO swarms (info_hash, package_id, position, rendition) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(
                    f"an info_hash of {package_id!r} belongs to another package"
                ) from exc

        self._write(replace)

    def swarm(self, info_hash: str) -> Swarm | None:
        rows = self._read(
            "SELECT info_hash, package_id, rendition FROM swarms WHERE info_hash = ?", (info_hash,)
        )
        return Swarm(*rows[0]) if rows else None

    def swarms_of(self, package_id: str) -> list[Swarm]:
        """The package's swarms in its master's order (empty when none are recorded)."""
        rows = self._read(
            "SELECT info_hash, package_id, rendition FROM swarms WHERE package_id = ? "
            "ORDER BY position",
            (package_id,),
        )
        return [Swarm(*row) for row in rows]

    def packages_without_swarms(self) -> list[str]:
        """Published packages with no swarm recorded: published before swarms were, or by a
        process that stopped between the two."""
        rows = self._read(
            "SELECT id FROM packages WHERE id NOT IN (SELECT package_id FROM swarms) ORDER BY id"
        )
        return [row["id"] for row in rows]
