"""Tests of the metadata catalog: the status state machine, idempotent creation by upload, package
publication and dedup, pagination, validation, persistence and thread safety."""

import hashlib
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from origin.catalog import (
    ALLOWED_TRANSITIONS,
    Catalog,
    CatalogError,
    Conflict,
    InvalidTransition,
    NotFound,
    NotPublished,
    Rendition,
    Video,
    VideoStatus,
)

SHA_A = hashlib.sha256(b"source a").hexdigest()
SHA_B = hashlib.sha256(b"source b").hexdigest()
LADDER = (
    Rendition("360p", 360, 640, 900_000, "avc1.64001e,mp4a.40.2", 3, 700_000),
    Rendition("720p", 720, 1280, 3_000_000, "avc1.64001f,mp4a.40.2", 3),
)


class TickingClock:
    """A clock that advances one second per reading: every write gets a distinct time."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1_000_000)

    def __call__(self) -> float:
        return float(next(self._ticks))


@pytest.fixture
def catalog() -> Iterator[Catalog]:
    with Catalog(":memory:", clock=TickingClock()) as catalog:
        yield catalog


def make_video(
    catalog: Catalog, video_id: str, *, creator: str = "alice", sha: str = SHA_A
) -> Video:
    return catalog.create_video(
        video_id=video_id, creator=creator, caption="hi #fyp", music="song", source_sha256=sha
    )


def put_in(catalog: Catalog, video_id: str, status: VideoStatus) -> Video:
    """Drive a fresh, published video along allowed transitions into `status`."""
    path = {
        VideoStatus.UPLOADED: [],
        VideoStatus.PROCESSING: [VideoStatus.PROCESSING],
        VideoStatus.READY: [VideoStatus.PROCESSING, VideoStatus.READY],
        VideoStatus.HELD: [VideoStatus.PROCESSING, VideoStatus.HELD],
        VideoStatus.FAILED: [VideoStatus.PROCESSING, VideoStatus.FAILED],
        VideoStatus.REJECTED: [VideoStatus.PROCESSING, VideoStatus.HELD, VideoStatus.REJECTED],
    }[status]
    video = catalog.video(video_id)
    for step in path:
        video = catalog.set_status(video_id, step)
    assert video is not None and video.status is status
    return video


def test_a_new_video_is_uploaded_and_plays_its_own_unpublished_package(catalog: Catalog) -> None:
    video = make_video(catalog, "v1")
    assert video.status is VideoStatus.UPLOADED
    assert video.package_id == "v1"
    assert video.reason == ""
    assert (video.duration, video.width, video.height) == (None, None, None)
    assert video.created_at == video.updated_at
    assert catalog.video("v1") == video
    assert catalog.video("nope") is None
    assert catalog.package("v1") is None


def test_the_transition_table_is_the_documented_one() -> None:
    s = VideoStatus
    assert dict(ALLOWED_TRANSITIONS) == {
        s.UPLOADED: {s.PROCESSING},
        s.PROCESSING: {s.PROCESSING, s.READY, s.HELD, s.FAILED},
        s.READY: set(),
        s.HELD: {s.READY, s.REJECTED},
        s.FAILED: {s.PROCESSING},
        s.REJECTED: set(),
    }


@pytest.mark.parametrize("current", list(VideoStatus))
@pytest.mark.parametrize("wanted", list(VideoStatus))
def test_transition_matrix(catalog: Catalog, current: VideoStatus, wanted: VideoStatus) -> None:
    make_video(catalog, "v1")
    catalog.publish_package("v1", LADDER)
    before = put_in(catalog, "v1", current)
    if wanted in ALLOWED_TRANSITIONS[current]:
        after = catalog.set_status("v1", wanted, reason="because")
        assert after.status is wanted
        assert after.reason == "because"
        assert after.updated_at > before.updated_at
        assert catalog.video("v1") == after
    else:
        with pytest.raises(InvalidTransition) as raised:
            catalog.set_status("v1", wanted, reason="because")
        assert (raised.value.video_id, raised.value.current, raised.value.wanted) == (
            "v1",
            current,
            wanted,
        )
        assert str(current) in str(raised.value) and str(wanted) in str(raised.value)
        assert catalog.video("v1") == before


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(VideoStatus)), max_size=12))
def test_random_transition_sequences_follow_the_table(steps: list[VideoStatus]) -> None:
    with Catalog(":memory:", clock=TickingClock()) as catalog:
        make_video(catalog, "v1")
        catalog.publish_package("v1", LADDER)
        expected = VideoStatus.UPLOADED
        for wanted in steps:
            before = catalog.video("v1")
            if wanted in ALLOWED_TRANSITIONS[expected]:
                assert catalog.set_status("v1", wanted).status is wanted
                expected = wanted
            else:
                with pytest.raises(InvalidTransition):
                    catalog.set_status("v1", wanted)
                assert catalog.video("v1") == before
        video = catalog.video("v1")
        assert video is not None and video.status is expected


@pytest.mark.parametrize("status", [VideoStatus.READY, VideoStatus.HELD])
def test_ready_and_held_need_a_published_package(catalog: Catalog, status: VideoStatus) -> None:
    make_video(catalog, "v1")
    before = catalog.set_status("v1", VideoStatus.PROCESSING)
    with pytest.raises(NotPublished):
        catalog.set_status("v1", status)
    assert catalog.video("v1") == before
    catalog.publish_package("v1", LADDER)
    assert catalog.set_status("v1", status).status is status


def test_unknown_videos_are_not_found(catalog: Catalog) -> None:
    with pytest.raises(NotFound):
        catalog.set_status("ghost", VideoStatus.PROCESSING)
    with pytest.raises(LookupError):
        catalog.set_media_info("ghost", duration=1.0, width=1, height=1)
    with pytest.raises(NotFound):
        catalog.publish_package("ghost", LADDER)


def test_create_is_idempotent_by_upload(catalog: Catalog) -> None:
    first = catalog.create_video(
        video_id="v1", creator="alice", caption="", music="", source_sha256=SHA_A,
        upload_id="up1", length=10,
    )  # fmt: skip
    again = catalog.create_video(
        video_id="v2", creator="alice", caption="other", music="", source_sha256=SHA_A,
        upload_id="up1", length=10,
    )  # fmt: skip
    assert again == first
    assert catalog.video("v2") is None
    assert catalog.video_of_upload("up1") == first
    assert catalog.video_of_upload("up2") is None
    assert make_video(catalog, "v3").id == "v3"  # no upload id: just a new video


def test_an_upload_of_another_user_or_length_conflicts(catalog: Catalog) -> None:
    catalog.create_video(
        video_id="v1", creator="alice", caption="", music="", source_sha256=SHA_A,
        upload_id="up1", length=10,
    )  # fmt: skip
    with pytest.raises(Conflict):
        catalog.create_video(
            video_id="v2", creator="bob", caption="", music="", source_sha256=SHA_A,
            upload_id="up1", length=10,
        )  # fmt: skip
    with pytest.raises(Conflict):
        catalog.create_video(
            video_id="v2", creator="alice", caption="", music="", source_sha256=SHA_A,
            upload_id="up1", length=11,
        )  # fmt: skip
    assert catalog.video("v2") is None


def test_a_taken_video_id_conflicts(catalog: Catalog) -> None:
    first = make_video(catalog, "v1")
    with pytest.raises(Conflict):
        make_video(catalog, "v1", creator="bob")
    assert catalog.video("v1") == first


def test_upload_id_and_length_go_together(catalog: Catalog) -> None:
    with pytest.raises(ValueError):
        catalog.create_video(
            video_id="v1", creator="a", caption="", music="", source_sha256=SHA_A, upload_id="u"
        )
    with pytest.raises(ValueError):
        catalog.create_video(
            video_id="v1", creator="a", caption="", music="", source_sha256=SHA_A, length=3
        )
    assert catalog.video("v1") is None


def test_publish_replaces_renditions_and_only_originals_publish(catalog: Catalog) -> None:
    make_video(catalog, "v1")
    first = catalog.publish_package("v1", LADDER)
    assert catalog.package("v1") == first
    assert first.renditions == LADDER
    replaced = catalog.publish_package("v1", LADDER[1:])
    assert replaced.renditions == LADDER[1:]
    assert replaced.published_at > first.published_at
    assert catalog.package("v1") == replaced
    with pytest.raises(NotFound):
        catalog.publish_package("not-a-video", LADDER)
    assert catalog.package("not-a-video") is None


@pytest.mark.parametrize(
    "renditions",
    [
        (),
        (LADDER[0], LADDER[0]),
        (Rendition("bad name", 1, 1, 1, "avc1", 1),),
        (Rendition("r", 0, 1, 1, "avc1", 1),),
        (Rendition("r", 1, 1, 1, "", 1),),
        (Rendition("r", 1, 1, 1, "avc1", 0),),
        (Rendition("r", 1, 1, 1, "avc1", 1, average_bandwidth=-5),),
    ],
)
def test_invalid_renditions_publish_nothing(
    catalog: Catalog, renditions: tuple[Rendition, ...]
) -> None:
    make_video(catalog, "v1")
    catalog.publish_package("v1", LADDER)
    with pytest.raises(ValueError):
        catalog.publish_package("v1", renditions)
    package = catalog.package("v1")
    assert package is not None and package.renditions == LADDER


def test_dedup_finds_a_published_package_by_source_whatever_its_status(catalog: Catalog) -> None:
    make_video(catalog, "orig", sha=SHA_A)
    assert catalog.find_package_by_source(SHA_A) is None  # not published yet
    catalog.publish_package("orig", LADDER)
    put_in(catalog, "orig", VideoStatus.REJECTED)
    assert catalog.find_package_by_source(SHA_A) == "orig"
    assert catalog.find_package_by_source(SHA_B) is None

    make_video(catalog, "dup", sha=SHA_A)
    assert catalog.set_package("dup", "orig").package_id == "orig"
    catalog.set_status("dup", VideoStatus.PROCESSING)
    assert catalog.set_status("dup", VideoStatus.READY).status is VideoStatus.READY
    # A duplicate plays the package but is not its original: the answer stays the original.
    assert catalog.find_package_by_source(SHA_A) == "orig"


def test_set_package_needs_a_published_package_or_the_own_id(catalog: Catalog) -> None:
    make_video(catalog, "v1")
    make_video(catalog, "v2")
    with pytest.raises(NotPublished):
        catalog.set_package("v1", "v2")
    catalog.publish_package("v2", LADDER)
    assert catalog.set_package("v1", "v2").package_id == "v2"
    put_in(catalog, "v1", VideoStatus.READY)
    # Ready on v2's ladder: going back to its own, unpublished one would show a missing ladder.
    with pytest.raises(NotPublished):
        catalog.set_package("v1", "v1")
    catalog.publish_package("v1", LADDER)
    assert catalog.set_package("v1", "v1").package_id == "v1"


def test_package_visible(catalog: Catalog) -> None:
    assert catalog.package_visible("p") is None
    make_video(catalog, "p")
    assert catalog.package_visible("p") is False
    catalog.publish_package("p", LADDER)
    make_video(catalog, "dup")
    catalog.set_package("dup", "p")
    put_in(catalog, "p", VideoStatus.HELD)
    assert catalog.package_visible("p") is False
    put_in(catalog, "dup", VideoStatus.READY)
    assert catalog.package_visible("p") is True  # one ready video playing it is enough
    catalog.set_status("p", VideoStatus.REJECTED)
    assert catalog.package_visible("p") is True


@pytest.mark.parametrize(
    "bad",
    [{"duration": 0.0}, {"duration": float("nan")}, {"width": 0}, {"height": True}],
)
def test_media_info(catalog: Catalog, bad: dict[str, Any]) -> None:
    make_video(catalog, "v1")
    video = catalog.set_media_info("v1", duration=6.5, width=1080, height=1920)
    assert (video.duration, video.width, video.height) == (6.5, 1080, 1920)
    with pytest.raises(ValueError):
        catalog.set_media_info("v1", **{"duration": 1.0, "width": 1, "height": 1, **bad})
    assert catalog.video("v1") == video


def test_videos_of_pages_newest_first(catalog: Catalog) -> None:
    ids = [f"v{n}" for n in range(7)]
    for video_id in ids:
        make_video(catalog, video_id)
    make_video(catalog, "other", creator="bob")
    pages: list[list[str]] = []
    before: str | None = None
    while True:
        page = catalog.videos_of("alice", limit=3, before=before)
        if not page:
            break
        pages.append([video.id for video in page])
        before = page[-1].id
    assert pages == [["v6", "v5", "v4"], ["v3", "v2", "v1"], ["v0"]]
    with pytest.raises(ValueError):
        catalog.videos_of("alice", before="other")
    with pytest.raises(ValueError):
        catalog.videos_of("alice", before="missing")
    with pytest.raises(ValueError):
        catalog.videos_of("alice", limit=0)
    assert catalog.videos_of("nobody") == []


def test_videos_with_status_least_recently_changed_first(catalog: Catalog) -> None:
    for video_id in ("a", "b", "c"):
        make_video(catalog, video_id)
    for video_id in ("b", "c", "a"):
        catalog.set_status(video_id, VideoStatus.PROCESSING)
    catalog.set_status("b", VideoStatus.PROCESSING)  # b changed again: now the most recent
    found = catalog.videos_with_status(VideoStatus.PROCESSING)
    assert [video.id for video in found] == ["c", "a", "b"]
    assert [v.id for v in catalog.videos_with_status(VideoStatus.PROCESSING, limit=1)] == ["c"]
    assert catalog.videos_with_status(VideoStatus.UPLOADED) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("video_id", ""),
        ("video_id", "x" * 65),
        ("video_id", "a/b"),
        ("video_id", "é"),
        ("creator", "bad id"),
        ("caption", "c" * 2201),
        ("music", "m" * 201),
        ("source_sha256", "not-a-digest"),
    ],
)
def test_invalid_videos_are_refused_and_write_nothing(
    catalog: Catalog, field: str, value: str
) -> None:
    arguments: dict[str, Any] = {
        "video_id": "v1",
        "creator": "alice",
        "caption": "c" * 2200,  # the limits themselves are fine
        "music": "m" * 200,
        "source_sha256": SHA_A,
        field: value,
    }
    with pytest.raises(ValueError):
        catalog.create_video(**arguments)
    assert catalog.videos_of("alice") == []


def test_users(catalog: Catalog) -> None:
    assert catalog.user("alice") is None
    catalog.ensure_user("alice", "Alice")
    first = catalog.user("alice")
    assert first is not None and first.name == "Alice"
    catalog.ensure_user("alice", "Alice L.")
    renamed = catalog.user("alice")
    assert renamed is not None
    assert (renamed.name, renamed.created_at) == ("Alice L.", first.created_at)
    with pytest.raises(ValueError):
        catalog.ensure_user("not valid", "x")


def test_a_file_catalog_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    with Catalog(path) as catalog:
        make_video(catalog, "v1")
        catalog.publish_package("v1", LADDER)
        ready = put_in(catalog, "v1", VideoStatus.READY)
    with Catalog(path) as catalog:
        assert catalog.video("v1") == ready
        package = catalog.package("v1")
        assert package is not None and package.renditions == LADDER
        make_video(catalog, "v2")  # migrations are not re-run on an up-to-date file
        assert [video.id for video in catalog.videos_of("alice")] == ["v2", "v1"]


def test_a_closed_catalog_refuses_calls() -> None:
    catalog = Catalog(":memory:")
    catalog.close()
    catalog.close()
    with pytest.raises(CatalogError, match="closed"):
        catalog.video("v1")


def test_threads_share_one_catalog(tmp_path: Path) -> None:
    threads, per_thread = 8, 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads)
    with Catalog(tmp_path / "catalog.db") as catalog:

        def work(worker: int) -> None:
            try:
                start.wait()
                for n in range(per_thread):
                    video_id = f"w{worker}-{n}"
                    make_video(catalog, video_id, creator=f"user{worker}")
                    catalog.set_status(video_id, VideoStatus.PROCESSING)
                    # Everyone races for the same upload id: exactly one video may come of it.
                    catalog.create_video(
                        video_id=f"race{worker}-{n}", creator="racer", caption="", music="",
                        source_sha256=SHA_B, upload_id=f"up{n}", length=1,
                    )  # fmt: skip
            except BaseException as error:  # collected for the main thread to fail on
                errors.append(error)

        workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        assert errors == []
        processing = catalog.videos_with_status(VideoStatus.PROCESSING, limit=1000)
        assert len(processing) == threads * per_thread
        assert len(catalog.videos_of("racer", limit=1000)) == per_thread
