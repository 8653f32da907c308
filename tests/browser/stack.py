"""A real Shoal stack for browser tests: origin, edge and tracker processes on a test LAN, a
video packaged by Shoal's own ladder, the player page, and headless Chromium in namespaces.

- The video: `package_video` (the ffmpeg ladder of uploads and samples) into a filesystem
  store, `VIDEO_SECONDS` long in 2 s segments, two rungs; its swarms are registered in the
  origin's catalog the way the origin registers any published package, so the tracker can run
  in allow-list mode and ask the origin about each info_hash, as in production.
- The nodes: `shoal origin`, `shoal edge` and `shoal tracker`, each the command an operator
  runs, started with `--port 0` and an announce file. The edge and the tracker listen on the
  LAN's host address (the bridge in the root namespace, `tests.netns.Lan`), so players in the
  namespaces reach them and nothing outside this machine does; the origin listens on loopback
  (only the edge and the tracker talk to it).
- The page: `deploy/player/` (index.html, player.js and the npm packages' ES module builds in
  its node_modules/) served by a small aiohttp app on the LAN's host address.
- Chromium: Debian's `/usr/bin/chromium`, launched by Playwright through a wrapper script
  that runs it inside a namespace (Playwright talks to it over a pipe, which crosses namespaces).
"""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from playwright.async_api import Browser, Page, Playwright

from deploy.local import healthy, stop_in_reverse
from deploy.workers import die_with_parent
from origin.catalog import Catalog
from origin.ladder import SAMPLE_LADDER, package_video
from origin.store.fs import FilesystemStore
from origin.swarms import register_package
from tests.netns import Lan, Namespace

REPO = Path(__file__).resolve().parents[2]
PLAYER_DIR = REPO / "deploy" / "player"
INSTALL_HINT = "run `make player` (npm ci --prefix deploy/player --ignore-scripts)"
PLAYER_MODULES = (
    "node_modules/hls.js/dist/hls.mjs",
    "node_modules/p2p-media-loader-core/dist/p2p-media-loader-core.es.js",
    "node_modules/p2p-media-loader-hlsjs/dist/p2p-media-loader-hlsjs.es.js",
)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    # Raw host candidates instead of mDNS names: nothing on the test LAN answers mDNS.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
)

VIDEO_ID = "interop-testsrc"
VIDEO_SECONDS = 20
VIDEO_RUNGS = SAMPLE_LADDER[:2]
"""360p and 540p: two variants, two swarms; the tests lock the players to the first."""
START_TIMEOUT = 30.0
STOP_GRACE_SECONDS = 5.0
_LOG_TAIL_LINES = 30


def missing_player_files() -> list[str]:
    """The files of `deploy/player` the page needs that are not there."""
    wanted = ("index.html", "player.js", *PLAYER_MODULES)
    return [name for name in wanted if not (PLAYER_DIR / name).is_file()]


def make_video(store_root: Path, video_id: str = VIDEO_ID) -> None:
    """Package a synthetic `VIDEO_SECONDS` video with Shoal's ladder into a filesystem store."""
    seconds = str(VIDEO_SECONDS)
    video = "testsrc2=size=720x1280:rate=30"
    audio = "sine=frequency=440:sample_rate=48000"
    inputs = ["-t", seconds, "-f", "lavfi", "-i", video, "-t", seconds, "-f", "lavfi", "-i", audio]
    store = FilesystemStore(store_root)
    try:
        package_video(store, video_id, inputs, VIDEO_RUNGS, audio_input=1, frame_rate=30)
    finally:
        store.close()


def register_swarms(store_root: Path, catalog_path: Path, video_id: str = VIDEO_ID) -> None:
    """Record the video's swarms in the origin's catalog before the origin starts (what the
    origin does for every package it publishes)."""
    store = FilesystemStore(store_root)
    catalog = Catalog(catalog_path)
    try:
        if not register_package(store, catalog, video_id):
            raise RuntimeError(f"no master playlist for {video_id} in {store_root}")
    finally:
        catalog.close()
        store.close()


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Node:
    """One `shoal` process and where it listens."""

    name: str
    process: "subprocess.Popen[bytes]"
    log: Path
    url: str = ""

    def describe(self) -> str:
        return f"--- {self.name} ({self.url or 'not listening'}) ---\n{log_tail(self.log)}"


@dataclass
class Stack:
    """The processes of one test's stack; `stop` ends them all, latest first."""

    runtime: Path
    env: dict[str, str]
    nodes: list[Node] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str]) -> Node:
        announce = self.runtime / f"{name}.json"
        log = self.runtime / f"{name}.log"
        command = [sys.executable, "-m", "deploy.cli", *argv, "--name", name]
        command += ["--port", "0", "--announce", str(announce)]
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        node = Node(name, process, log)
        self.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}\n{node.describe()}")
            if not node.url and announce.exists():
                node.url = json.loads(announce.read_text())["url"]
            if node.url and healthy(node.url):
                return node
            time.sleep(0.05)
        raise RuntimeError(f"{name} not healthy after {START_TIMEOUT}s\n{node.describe()}")

    def describe(self) -> str:
        return "\n".join(node.describe() for node in self.nodes)

    def stop(self) -> None:
        stop_in_reverse([node.process for node in self.nodes], STOP_GRACE_SECONDS)


@dataclass(frozen=True)
class Shoal:
    """What a test plays: URLs as seen from the LAN's namespaces."""

    lan: Lan
    stack: Stack
    origin: str
    edge: str
    tracker: str
    """ws://host:port"""
    video_id: str

    @property
    def master(self) -> str:
        return f"{self.edge}/v/{self.video_id}/master.m3u8"

    @property
    def swarm_id(self) -> str:
        return f"shoal-{self.video_id}"


@contextlib.contextmanager
def run_stack(lan: Lan, store_root: Path, runtime: Path) -> Iterator[Shoal]:
    """Origin (loopback), edge and tracker (LAN host address) for the video in `store_root`."""
    data_home = runtime / "data"
    (data_home / "shoal").mkdir(parents=True)
    register_swarms(store_root, data_home / "shoal" / "catalog.sqlite")
    env = {**os.environ, "XDG_DATA_HOME": str(data_home), "PYTHONUNBUFFERED": "1"}
    stack = Stack(runtime, env)
    host = lan.host_address
    try:
        origin = stack.spawn(
            "origin",
            ["origin", "--host", "127.0.0.1", "--set", f"store.path={store_root}",
             "--set", "uploads.workers=0"],
        )  # fmt: skip
        edge = stack.spawn("edge", ["edge", "--host", host, "--upstream", origin.url])
        # Allow-list mode: the tracker asks the origin about every info_hash, so a browser
        # joins only if it derived the very info_hash the origin registered for the video.
        tracker = stack.spawn(
            "tracker",
            ["tracker", "--host", host, "--set", "tracker.allow_list=true",
             "--set", f"tracker.origin_url={origin.url}"],
        )  # fmt: skip
        yield Shoal(
            lan,
            stack,
            origin=origin.url,
            edge=edge.url,
            tracker=tracker.url.replace("http://", "ws://", 1),
            video_id=VIDEO_ID,
        )
    finally:
        stack.stop()


_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".map": "application/json",
}


def player_app(root: Path = PLAYER_DIR) -> web.Application:
    """The player page and its modules: GET of a file under `root` with a known type."""
    base = root.resolve()

    async def serve(request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"] or "index.html"
        path = (base / tail).resolve()
        content_type = _CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_relative_to(base) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(
            path, headers={"Content-Type": content_type, "Cache-Control": "no-store"}
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    return app


@contextlib.asynccontextmanager
async def serve_player(host: str) -> AsyncIterator[str]:
    """Serve `deploy/player` on `host` (a free port); yields its base URL."""
    runner = web.AppRunner(player_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def chromium_in(
    playwright: Playwright, namespace: Namespace, scripts: Path
) -> AsyncIterator[Browser]:
    """Headless Chromium running inside `namespace`, with a fresh profile (Playwright's)."""
    wrapper = namespace.wrapper(scripts, str(CHROMIUM))
    browser = await playwright.chromium.launch(
        executable_path=str(wrapper),
        headless=True,
        args=list(CHROMIUM_FLAGS),
        timeout=30_000,
    )
    try:
        yield browser
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(browser.close(), 10.0)


def player_url(page_base: str, shoal: Shoal, **extra: str | int) -> str:
    """The page playing the stack's video with its tracker; `extra`: more query parameters
    (`level`, `hdw`: see deploy/player/player.js)."""
    query = {"src": shoal.master, "tracker": shoal.tracker, "swarm": shoal.swarm_id, **extra}
    return f"{page_base}/index.html?{urlencode(query)}"


async def open_player(browser: Browser, url: str, console: list[str]) -> Page:
    page = await browser.new_page()
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    await page.goto(url, timeout=15_000)
    await page.wait_for_function("() => window.shoalStats !== undefined", timeout=15_000)
    return page


async def stats_of(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = await page.evaluate("() => window.shoalStats")
    return stats


class SdkPeer:
    """`python -m peer_sdk` inside a namespace; it prints one JSON event per line."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, namespace: Namespace, log: Path, *args: str) -> "SdkPeer":
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                *namespace.command([sys.executable, "-m", "peer_sdk", *args]),
                cwd=REPO,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=sink,
                preexec_fn=die_with_parent,
            )
        return cls(process, log)

    async def until(self, event: str, timeout: float) -> dict[str, Any]:
        """The next `event` line; `TimeoutError`, or `RuntimeError` if the peer exits first."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    await self.process.wait()
                    raise RuntimeError(f"the SDK peer exited ({self.process.returncode})")
                text = raw.decode(errors="replace").strip()
                if not text.startswith("{"):
                    continue
                line: dict[str, Any] = json.loads(text)
                self.events.append(line)
                if line.get("event") == event:
                    return line

    def describe(self) -> str:
        return f"--- SDK peer events ---\n{self.events}\n--- SDK peer log ---\n{log_tail(self.log)}"

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), STOP_GRACE_SECONDS)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
