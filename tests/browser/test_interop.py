"""Interop: browsers running hls.js + p2p-media-loader 2.3.1 swarm through Shoal.

Each browser is Debian's Chromium in a network namespace of its own on the test LAN
(`tests.netns`); Shoal's edge and tracker listen on the LAN's host address. The player page is
`deploy/player/index.html`, which sums p2p-media-loader's events into `window.shoalStats`.

Why the players are configured as they are: p2p-media-loader fetches everything inside its
high-demand window (`hdw`, 15 s by default) over HTTP, and a segment beyond it only from a peer
that announced it. The first viewer (the seeder) gets a window longer than the video, so it has
every segment at once; a later viewer gets a 4 s window, so past its first segments it asks its
peers, which is the exchange under test. Both lock playback to the first variant: one swarm.

The Python SDK peer (`python -m peer_sdk`, in a namespace too) and a browser exchange segments
both ways in one session: see `test_sdk_peer_and_browser_exchange_both_ways` for the timing.
The tracker runs in allow-list mode, so every peer in these swarms derived the info_hash the
origin registered for the video (`core.p2p.swarm_id`, p2p-media-loader 2.3's derivation).
"""

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Playwright

from tests.browser.stack import (
    VIDEO_RUNGS,
    VIDEO_SECONDS,
    SdkPeer,
    Shoal,
    chromium_in,
    open_player,
    player_url,
    stats_of,
)

pytestmark = [pytest.mark.xdist_group("browser"), pytest.mark.slow, pytest.mark.timeout(180)]

SEGMENTS = VIDEO_SECONDS // 2
RENDITION = VIDEO_RUNGS[0].name
"""The first variant, which the players are locked to (`level=0`)."""
SEEDER_WINDOW = 3 * VIDEO_SECONDS
"""High-demand window of the first viewer: the whole video comes over HTTP at once."""
LEECHER_WINDOW = 4
"""High-demand window of a later viewer: past 4 s ahead, segments come from peers."""


async def wait_for(
    what: str,
    probe: Callable[[], Awaitable[dict[str, Any]]],
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
    context: Callable[[], str],
) -> dict[str, Any]:
    """Poll `probe` until `done` holds; fail with the last state and `context()` otherwise."""
    deadline = time.monotonic() + timeout
    state = await probe()
    while not done(state):
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout:.0f}s, still not {what}: {state}\n{context()}")
        await asyncio.sleep(0.25)
        state = await probe()
    return state


def describe(shoal: Shoal, consoles: dict[str, list[str]]) -> str:
    lines = [shoal.stack.describe()]
    for name, console in consoles.items():
        lines.append(f"--- {name} console ---")
        lines.extend(console[-30:])
    return "\n".join(lines)


async def test_two_browsers_play_and_exchange_segments(
    shoal: Shoal, page_base: str, playwright: Playwright, tmp_path: Path
) -> None:
    seeder_ns, leecher_ns = shoal.lan.add(), shoal.lan.add()
    consoles: dict[str, list[str]] = {"seeder": [], "leecher": []}

    def context() -> str:
        return describe(shoal, consoles)

    async with (
        chromium_in(playwright, seeder_ns, tmp_path) as seeder_browser,
        chromium_in(playwright, leecher_ns, tmp_path) as leecher_browser,
    ):
        seeder = await open_player(
            seeder_browser,
            player_url(page_base, shoal, level=0, hdw=SEEDER_WINDOW),
            consoles["seeder"],
        )
        await wait_for(
            "holding every segment",
            lambda: stats_of(seeder),
            lambda s: s["segmentsLoaded"] >= SEGMENTS or bool(s["errors"]),
            30.0,
            context,
        )
        leecher = await open_player(
            leecher_browser,
            player_url(page_base, shoal, level=0, hdw=LEECHER_WINDOW),
            consoles["leecher"],
        )
        got = await wait_for(
            "done (every segment loaded, playing, bytes from a peer)",
            lambda: stats_of(leecher),
            lambda s: (
                bool(s["errors"])
                or (s["segmentsLoaded"] >= SEGMENTS and s["currentTime"] > 4 and s["p2pBytes"] > 0)
            ),
            45.0,
            context,
        )
        gave = await stats_of(seeder)

    print(f"\nseeder: {gave}\nleecher: {got}")
    assert not gave["errors"] and not got["errors"], context()
    assert gave["currentTime"] > 2, f"the seeder did not play: {gave}"
    assert got["currentTime"] > 4, f"the later viewer did not play: {got}"
    assert got["p2pBytes"] > 0, f"no segment went over P2P: {got}"
    assert gave["uploadedBytes"] > 0, f"the seeder uploaded nothing: {gave}"
    # Receivers count at most what senders sent (a cancelled transfer is cut short).
    assert got["p2pBytes"] <= gave["uploadedBytes"], (got, gave)
    share = got["p2pBytes"] / (got["p2pBytes"] + got["httpBytes"])
    print(f"leecher: {got['p2pBytes']} B over P2P, {got['httpBytes']} B over HTTP ({share:.0%})")


def played_digest(store: Path, shoal: Shoal) -> str:
    """SHA-256 of the rendition's media segments in order (what the SDK's `PlayResult` hashes)."""
    directory = store / "videos" / shoal.video_id / RENDITION
    playlist = (directory / "index.m3u8").read_text().splitlines()
    digest = hashlib.sha256()
    for uri in (line for line in playlist if line and not line.startswith("#")):
        digest.update((directory / uri).read_bytes())
    return digest.hexdigest()


SDK_SPEED = 0.5
SDK_WINDOW = 2.0
SDK_HEAD_START = 6.0
BROWSER_WINDOW = 2
"""The SDK peer starts first and plays at half speed with a 2 s high-demand window: when the
browser opens the page `SDK_HEAD_START` seconds later, the SDK peer holds its first segments,
which the browser (2 s window too) takes from it. The browser then plays at full speed,
overtakes the SDK peer and fetches the later segments over HTTP before the SDK peer needs
them; the SDK peer takes those from the browser (they are in its P2P window)."""


async def test_sdk_peer_and_browser_exchange_both_ways(
    shoal: Shoal, page_base: str, playwright: Playwright, tmp_path: Path, video_store: Path
) -> None:
    browser_ns, sdk_ns = shoal.lan.add(), shoal.lan.add()
    consoles: dict[str, list[str]] = {"browser": []}
    sdk: SdkPeer | None = None

    def context() -> str:
        return describe(shoal, consoles) + ("" if sdk is None else "\n" + sdk.describe())

    def both_ways(s: dict[str, Any]) -> bool:
        return bool(s["errors"]) or (
            s["p2pBytes"] > 0 and s["uploadedBytes"] > 0 and s["currentTime"] > 6
        )

    try:
        sdk = await SdkPeer.start(
            sdk_ns,
            tmp_path / "sdk-peer.log",
            *("--edge", shoal.edge, "--tracker", shoal.tracker),
            *("--play", shoal.video_id, "--rendition", RENDITION, "--speed", str(SDK_SPEED)),
            *("--high-demand-window", str(SDK_WINDOW), "--p2p-window", "60", "--linger", "60"),
        )
        await asyncio.sleep(SDK_HEAD_START)
        async with chromium_in(playwright, browser_ns, tmp_path) as browser:
            viewer = await open_player(
                browser,
                player_url(page_base, shoal, level=0, hdw=BROWSER_WINDOW),
                consoles["browser"],
            )
            got = await wait_for(
                "done (playing, bytes from and to the SDK peer)", lambda: stats_of(viewer),
                both_ways, 45.0, context,
            )  # fmt: skip
            # The SDK peer plays to the end (at half speed, about 40 s from its start).
            try:
                played = await sdk.until("played", VIDEO_SECONDS / SDK_SPEED + 10.0)
            except (TimeoutError, RuntimeError) as error:
                pytest.fail(f"the SDK peer did not play to the end: {error!r}\n{context()}")
            got = await stats_of(viewer)
    finally:
        if sdk is not None:
            await sdk.stop()

    sdk_stats = played["stats"]
    sdk_id = sdk_stats["peer_id"]
    print(f"\nbrowser: {got}\nSDK peer: {sdk_stats}")
    assert not got["errors"], context()
    assert set(got["p2pBytesByPeer"]) == {sdk_id}, got
    assert len(sdk_stats["peers"]) == 1, f"the SDK peer knew other peers: {sdk_stats}"
    ((browser_id, counters),) = sdk_stats["peers"].items()
    assert counters["downloaded"] > 0, f"the SDK peer got nothing from the browser: {sdk_stats}"
    assert counters["uploaded"] > 0, f"the SDK peer sent the browser nothing: {sdk_stats}"
    # Receivers count at most what senders sent (a cancelled transfer is cut short); in the
    # runs seen, the two ends agreed to the byte.
    assert got["p2pBytesByPeer"][sdk_id] <= counters["uploaded"], (got, sdk_stats)
    assert counters["downloaded"] <= got["uploadedBytesByPeer"][sdk_id], (got, sdk_stats)
    # What the browser sent matched the origin's SHA-256 list, and the SDK peer played the
    # video's exact bytes.
    assert sdk_stats["integrity_failures"] == 0, sdk_stats
    assert played["result"]["sha256"] == played_digest(video_store, shoal), played
    print(
        f"browser -> SDK peer: {counters['downloaded']} B; "
        f"SDK peer -> browser: {counters['uploaded']} B (browser {browser_id}, SDK {sdk_id})"
    )
