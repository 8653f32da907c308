"""The origin vouches for the P2P swarms of what it serves: every rendition's info_hash, as
p2p-media-loader computes it from the master playlist, resolves to its video while the video is
visible; held videos' swarms are 404 until approved; bad parameters are 400. The first tests use
hand-made masters; the slow ones run the real upload pipeline and the sample library."""

import asyncio
import hashlib
import itertools
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from core.config import OriginConfig
from core.p2p.swarm_id import info_hash, stream_index, stream_swarm_id, video_swarm_id
from manifests import MasterPlaylist, Variant, render_master
from origin.app import VISIBILITY, make_origin_app
from origin.catalog import Catalog, Conflict, Rendition, Swarm, VideoStatus
from origin.samples import ensure_samples
from origin.store.fs import FilesystemStore
from origin.swarms import add_swarm_routes, register_at_start, register_package
from tests.core.p2p.test_swarm_id import SHOAL_LADDER as LADDER
from tests.origin.test_uploads import (
    Origin,
    api,
    clip,  # noqa: F401 - the fixture, shared rather than copied
    running,
    settled,
    upload,
    video_when,
)

SHA = hashlib.sha256(b"a source").hexdigest()
# core/p2p's golden vectors for this ladder as the sample "sample-testsrc" (p2pml 2.3.1 itself).
SAMPLE_HASHES = {"360p": "0Vas5k84kvvvXTNVGDrG", "720p": "QDqaMOF/Tj622gqYupbL"}
UNKNOWN = "A" * 20


def put_master(store: FilesystemStore, package: str, variants: tuple[Variant, ...]) -> str:
    text = render_master(MasterPlaylist(variants, independent_segments=True))
    store.put_bytes(f"videos/{package}/master.m3u8", text.encode())
    return text


def p2pml_info_hashes(video: str, master: str) -> dict[str, str]:
    """Each rung's info_hash from the master's text as hls.js hands it to p2pml: bitrate the
    BANDWIDTH, codecs the video one, FRAME-RATE as written; independent of `manifests`."""
    lines = master.splitlines()
    hashes = {}
    for tag, uri in itertools.pairwise(lines):
        if not tag.startswith("#EXT-X-STREAM-INF:"):
            continue
        attributes = dict(re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', tag.partition(":")[2]))
        codecs = attributes["CODECS"].strip('"').split(",")
        width, height = map(int, attributes["RESOLUTION"].split("x"))
        index = stream_index(
            int(attributes["BANDWIDTH"]),
            ",".join(codec for codec in codecs if codec.startswith("avc1")),
            width,
            height,
            frame_rate=attributes["FRAME-RATE"],
        )
        swarm = stream_swarm_id(video_swarm_id(video), "main", index)
        hashes[uri.split("/", 1)[0]] = info_hash(swarm)
    return hashes


def lookup(hash_: str) -> str:
    return f"/api/swarms?info_hash={quote(hash_, safe='')}"


class Library:
    """A store, a catalog and an origin app with the swarm routes, over `tmp_path`."""

    def __init__(self, root: Path) -> None:
        self.store = FilesystemStore(root / "store")
        self.catalog = Catalog(root / "catalog.sqlite")
        self.app = make_origin_app(self.store, OriginConfig())
        add_swarm_routes(self.app, self.catalog)
        self.app[VISIBILITY] = self.catalog.package_visible

    def video(self, video_id: str, status: VideoStatus, package: str | None = None) -> None:
        """A video in `status`, playing its own package (published now) or `package`."""
        self.catalog.create_video(
            video_id=video_id, creator="alice", caption="", music="", source_sha256=SHA
        )
        self.catalog.set_status(video_id, VideoStatus.PROCESSING)
        if package is None:
            put_master(self.store, video_id, LADDER)
            self.catalog.publish_package(
                video_id, [Rendition("360p", 360, 640, 812_345, "avc1.4d401e", 3)]
            )
            assert register_package(self.store, self.catalog, video_id)
        else:
            self.catalog.set_package(video_id, package)
        self.catalog.set_status(video_id, status)


@pytest.fixture
async def library(tmp_path: Path) -> AsyncIterator[tuple[Library, TestClient[Any, Any]]]:
    library = Library(tmp_path)
    async with TestClient(TestServer(library.app)) as client:
        yield library, client
    library.catalog.close()


def test_the_catalog_replaces_a_packages_swarms(tmp_path: Path) -> None:
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        catalog.set_swarms("p", [("360p", "a" * 20), ("720p", "b" * 20), ("copy", "a" * 20)])
        # Alike renditions share one swarm, as in the browser: the first keeps it.
        assert catalog.swarms_of("p") == [
            Swarm("a" * 20, "p", "360p"),
            Swarm("b" * 20, "p", "720p"),
        ]
        catalog.set_swarms("p", [("360p", "c" * 20)])  # made again: other rates, other hashes
        assert catalog.swarm("a" * 20) is None
        assert catalog.swarm("c" * 20) == Swarm("c" * 20, "p", "360p")
        with pytest.raises(Conflict):
            catalog.set_swarms("q", [("360p", "c" * 20)])
        assert catalog.swarms_of("q") == []
        with pytest.raises(ValueError):
            catalog.set_swarms("q", [("360p", "short")])


async def test_a_rendition_resolves_while_visible_and_is_404_while_held(
    library: tuple[Library, TestClient[Any, Any]],
) -> None:
    lib, client = library
    lib.video("vid1", VideoStatus.HELD)
    registered = {s.rendition: s.info_hash for s in lib.catalog.swarms_of("vid1")}
    assert registered == p2pml_info_hashes("vid1", put_master(lib.store, "vid1", LADDER))
    for hash_ in registered.values():
        response = await client.get(lookup(hash_))
        assert response.status == 404 and response.headers["Cache-Control"] == "no-store"
        assert (await response.json())["error"]
    assert (await client.get("/api/videos/vid1/swarms")).status == 404
    lib.catalog.set_status("vid1", VideoStatus.READY)  # approved
    for rendition, hash_ in registered.items():
        response = await client.get(lookup(hash_))
        assert response.status == 200
        assert response.headers["Cache-Control"] == "max-age=60"
        assert await response.json() == {
            "info_hash": hash_,
            "video": "vid1",
            "rendition": rendition,
        }
    response = await client.get("/api/videos/vid1/swarms")
    assert response.status == 200 and response.headers["Cache-Control"] == "max-age=60"
    document = await response.json()
    assert document["swarm_id"] == "shoal-vid1"
    assert [(s["rendition"], s["info_hash"]) for s in document["swarms"]] == list(
        registered.items()
    )


async def test_a_duplicate_upload_shares_its_packages_swarms_when_ready(
    library: tuple[Library, TestClient[Any, Any]],
) -> None:
    lib, client = library
    lib.video("original", VideoStatus.READY)
    lib.video("copy", VideoStatus.READY, package="original")
    lib.video("held-copy", VideoStatus.HELD, package="original")
    document = await (await client.get("/api/videos/copy/swarms")).json()
    assert document["video"] == "copy" and document["swarm_id"] == "shoal-original"
    assert {s["video"] for s in document["swarms"]} == {"original"}
    assert (await client.get("/api/videos/held-copy/swarms")).status == 404
    assert (await client.get("/api/videos/nothing/swarms")).status == 404


@pytest.mark.parametrize(
    "query",
    ["", "?info_hash=", "?info_hash=" + "A" * 19, "?info_hash=" + "A" * 21, "?other=x"],
)
async def test_bad_parameters_are_400(
    library: tuple[Library, TestClient[Any, Any]], query: str
) -> None:
    _, client = library
    response = await client.get("/api/swarms" + query)
    assert response.status == 400 and "info_hash" in (await response.json())["error"]


async def test_an_unknown_swarm_is_404_and_one_parameter_is_allowed(
    library: tuple[Library, TestClient[Any, Any]],
) -> None:
    lib, client = library
    assert (await client.get(lookup(UNKNOWN))).status == 404
    lib.catalog.set_swarms("sample-x", [("360p", "ab+/cdefghijklmnopqr")])
    assert (await client.get(f"{lookup(UNKNOWN)}&info_hash={UNKNOWN}")).status == 400
    # Percent-encoded as it should be, or with a bare "+" (form encoding reads it as a space).
    for target in (lookup("ab+/cdefghijklmnopqr"), "/api/swarms?info_hash=ab+/cdefghijklmnopqr"):
        response = await client.get(target)
        assert response.status == 200, target
        assert (await response.json())["video"] == "sample-x"


def test_samples_and_packages_without_swarms_are_registered_at_start(tmp_path: Path) -> None:
    lib = Library(tmp_path)
    put_master(lib.store, "sample-testsrc", LADDER)
    lib.store.put_bytes("videos/sample-broken/master.m3u8", b"#EXTM3U\nnot a master\n")
    lib.catalog.create_video(
        video_id="old", creator="alice", caption="", music="", source_sha256=SHA
    )
    put_master(lib.store, "old", LADDER[:1])
    lib.catalog.publish_package("old", [Rendition("360p", 360, 640, 812_345, "avc1.4d401e", 3)])
    assert lib.catalog.packages_without_swarms() == ["old"]
    samples = ["sample-testsrc", "sample-broken", "sample-never-generated"]
    assert register_at_start(lib.store, lib.catalog, samples) == 2
    assert {s.rendition: s.info_hash for s in lib.catalog.swarms_of("sample-testsrc")} == (
        SAMPLE_HASHES
    )
    assert [s.rendition for s in lib.catalog.swarms_of("old")] == ["360p"]
    assert lib.catalog.packages_without_swarms() == []
    lib.catalog.close()


# ---- the real pipeline -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tall_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s 720x1280 clip: the uploads ladder makes 360p and 720p of it."""
    path = tmp_path_factory.mktemp("tall") / "tall.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=720x1280:rate=30", "-f", "lavfi",
         "-i", "sine=frequency=440:sample_rate=48000", "-t", "2",
         "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path


async def served_swarms(origin: Origin, package: str) -> dict[str, str]:
    """What p2pml computes from the master the origin serves, checked against the origin's
    answers for each info_hash."""
    status, master = await api(origin, f"/v/{package}/master.m3u8")
    assert status == 200
    hashes = p2pml_info_hashes(package, master.decode())
    for rendition, hash_ in hashes.items():
        status, document = await api(origin, lookup(hash_), {})
        assert status == 200, (rendition, document)
        assert document == {"info_hash": hash_, "video": package, "rendition": rendition}
    return hashes


@pytest.mark.slow
@pytest.mark.xdist_group("uploads")
async def test_every_rendition_of_an_upload_resolves(tmp_path: Path, tall_clip: Path) -> None:
    async with running(tmp_path) as origin:
        video = await video_when(origin, await upload(origin, tall_clip), settled)
        assert video["status"] == "ready", video
        # Ready means the lowest rung is out; the full master, then its swarms, follow.
        async with asyncio.timeout(60):
            while len(origin.pipeline.catalog.swarms_of(video["id"])) < 2:
                await asyncio.sleep(0.1)
        hashes = await served_swarms(origin, video["package"])
        assert set(hashes) == {"360p", "720p"}
        status, document = await api(origin, f"/api/videos/{video['id']}/swarms", {})
        assert status == 200
        assert {s["rendition"]: s["info_hash"] for s in document["swarms"]} == hashes


@pytest.mark.slow
@pytest.mark.xdist_group("uploads")
async def test_a_held_uploads_swarms_are_404_until_approved(tmp_path: Path, clip: Path) -> None:  # noqa: F811
    async with running(tmp_path) as origin:
        video = await video_when(origin, await upload(origin, clip, "this is Forbidden"), settled)
        assert video["status"] == "held", video
        swarms = origin.pipeline.catalog.swarms_of(video["id"])
        assert [s.rendition for s in swarms] == ["360p"]
        for swarm in swarms:
            assert (await api(origin, lookup(swarm.info_hash), {}))[0] == 404
        assert (await api(origin, f"/api/videos/{video['id']}/swarms", {}))[0] == 404
        origin.pipeline.approve(video["id"])
        hashes = await served_swarms(origin, video["id"])
        assert hashes == {s.rendition: s.info_hash for s in swarms}
        assert (await api(origin, f"/api/videos/{video['id']}/swarms", {}))[0] == 200


@pytest.mark.slow
@pytest.mark.xdist_group("uploads")
async def test_the_sample_library_is_registered_when_the_origin_starts(tmp_path: Path) -> None:
    # `shoal up` publishes samples into the store before the origin (and its catalog) starts.
    ensure_samples(FilesystemStore(tmp_path / "store"), 1, progress=lambda _: None)
    async with running(tmp_path, workers=0) as origin:
        hashes = await served_swarms(origin, "sample-testsrc")
        assert set(hashes) == {"360p", "540p", "720p"}
