"""The P2P swarms of the videos the origin publishes, and the API that vouches for them.

Shoal's players set p2p-media-loader's `swarmId` to `shoal-<id>` for `/v/<id>/master.m3u8`
(`core.p2p.swarm_id.video_swarm_id`), so the info_hash of each rendition's swarm follows from
the master playlist alone. A tracker in allow-list mode asks `GET /api/swarms?info_hash=` which
video a swarm belongs to, and refuses peers of swarms nobody vouches for.

One way in: `register_package` reads the master playlist the store holds (the very text players
get) and records its swarms in the catalog, replacing the package's earlier ones. It runs

- whenever a transcode publishes a master (the lowest-rung-first one, then the full one; the
  lowest rung hashes the same in both, as its measured rates do not change), before the video
  can turn ready;
- when the origin starts, for the sample library (published by `shoal up` / `shoal samples`,
  which have no catalog) and for any published package without swarms (published before this
  table existed, or by a process that stopped in between).

An upload of bytes already packaged plays the existing package, so it shares that package's
swarms (same segments, same peers); the id in the swarm is the package id, the one in its
playback URL. Lookups never touch the store: the tracker's hot path is one indexed query.

What is hidden from players is hidden here too: a swarm whose package the origin would not serve
(`origin.app.VISIBILITY`: a video processing, held, rejected, failed) answers 404, like its
files, until it is approved.
"""

import asyncio
import logging
from collections.abc import Iterable

from aiohttp import web

from core.p2p.swarm_id import video_swarm_id, video_swarms
from manifests import ManifestError, parse_master
from origin.app import VIDEO_KEY_PREFIX, package_hidden
from origin.catalog import INFO_HASH_LENGTH, Catalog, CatalogError, Swarm, VideoStatus
from origin.ladder import MASTER_PLAYLIST
from origin.store.base import ContentStore, ObjectNotFound

log = logging.getLogger(__name__)

CATALOG = web.AppKey("swarm_catalog", Catalog)
SWARM_MAX_AGE = 60
"""Seconds a tracker may keep an answer: a rejected video's swarm lives at most this long."""


def rendition_name(uri: str) -> str:
    """The rung a variant URI names: `360p/index.m3u8` is `360p` (`origin.ladder.publish`)."""
    return uri.split("/", 1)[0]


def register_package(store: ContentStore, catalog: Catalog, package_id: str) -> bool:
    """Record the swarms of the master playlist stored for `package_id`; False if none is."""
    try:
        text = store.read(f"{VIDEO_KEY_PREFIX}{package_id}/{MASTER_PLAYLIST}")
    except ObjectNotFound:
        return False
    swarms = video_swarms(package_id, parse_master(text.decode("utf-8")))
    catalog.set_swarms(package_id, [(rendition_name(s.uri), s.info_hash) for s in swarms])
    return True


def register_at_start(store: ContentStore, catalog: Catalog, samples: Iterable[str]) -> int:
    """Register the `samples` in the store and the published packages without swarms; the
    number registered. A package that cannot be registered is logged and skipped: the origin
    still starts, and only that package's peers are refused."""
    registered = 0
    for package_id in dict.fromkeys([*samples, *catalog.packages_without_swarms()]):
        try:
            registered += register_package(store, catalog, package_id)
        except (ManifestError, UnicodeDecodeError, CatalogError, ValueError) as exc:
            log.warning("package %s: its swarms cannot be registered: %s", package_id, exc)
    return registered


def add_swarm_routes(app: web.Application, catalog: Catalog) -> None:
    """`GET /api/swarms?info_hash=` and `GET /api/videos/{video}/swarms`, public (a tracker and
    players call them) and cacheable for `SWARM_MAX_AGE` seconds."""
    app[CATALOG] = catalog
    app.router.add_get("/api/swarms", _swarm)
    app.router.add_get("/api/videos/{video}/swarms", _video_swarms)


def _answer(document: object) -> web.Response:
    return web.json_response(document, headers={"Cache-Control": f"max-age={SWARM_MAX_AGE}"})


def _refuse(status: int, message: str) -> web.Response:
    # Not cached: an unknown swarm may be published, a held one approved, at any moment.
    return web.json_response(
        {"error": message}, status=status, headers={"Cache-Control": "no-store"}
    )


def _describe(swarm: Swarm) -> dict[str, str]:
    return {"info_hash": swarm.info_hash, "video": swarm.package_id, "rendition": swarm.rendition}


async def _swarm(request: web.Request) -> web.Response:
    values = request.query.getall("info_hash", [])
    if len(values) != 1:
        return _refuse(400, "exactly one info_hash parameter is required")
    # An info_hash is base64: a "+" sent unencoded arrives as a space (form encoding), and a
    # space is never part of one.
    info_hash = values[0].replace(" ", "+")
    if len(info_hash) != INFO_HASH_LENGTH:
        return _refuse(400, f"an info_hash is {INFO_HASH_LENGTH} characters")
    swarm = await asyncio.to_thread(request.app[CATALOG].swarm, info_hash)
    if swarm is None or package_hidden(request.app, swarm.package_id):
        return _refuse(404, "no such swarm")
    return _answer(_describe(swarm))


async def _video_swarms(request: web.Request) -> web.Response:
    video_id = request.match_info["video"]
    swarms = await asyncio.to_thread(_swarms_of_video, request.app, video_id)
    if not swarms:
        return _refuse(404, "no such video")
    return _answer(
        {
            "video": video_id,
            "swarm_id": video_swarm_id(swarms[0].package_id),
            "swarms": [_describe(swarm) for swarm in swarms],
        }
    )


def _swarms_of_video(app: web.Application, video_id: str) -> list[Swarm]:
    """The swarms players of `video_id` join: those of the package it plays, if the video is
    ready; an id the catalog has no video of is a package id (a sample's)."""
    catalog = app[CATALOG]
    video = catalog.video(video_id)
    if video is not None and video.status is not VideoStatus.READY:
        return []
    package_id = video_id if video is None else video.package_id
    return [] if package_hidden(app, package_id) else catalog.swarms_of(package_id)
