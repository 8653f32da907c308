"""Fixtures of the browser tests: the video, the test LAN, the stack, the page, Playwright.

Nothing here skips: a missing Chromium, npm packages or root fails the test with what to do.
"""

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Playwright, async_playwright

from tests.browser.stack import (
    CHROMIUM,
    INSTALL_HINT,
    PLAYER_DIR,
    Shoal,
    make_video,
    missing_player_files,
    run_stack,
    serve_player,
)
from tests.netns import Lan, require_netns


@pytest.fixture(scope="session")
def video_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A filesystem content store holding the test video (packaged once per xdist worker)."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is missing: make system-deps", pytrace=False)
    root = tmp_path_factory.mktemp("browser-store")
    make_video(root)
    return root


@pytest.fixture
def player_files() -> Path:
    missing = missing_player_files()
    if missing:
        pytest.fail(f"{PLAYER_DIR} lacks {', '.join(missing)}: {INSTALL_HINT}", pytrace=False)
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    return PLAYER_DIR


@pytest.fixture
def lan() -> Iterator[Lan]:
    require_netns()
    with Lan() as made:
        yield made


@pytest.fixture
def shoal(lan: Lan, video_store: Path, tmp_path: Path) -> Iterator[Shoal]:
    runtime = tmp_path / "stack"
    runtime.mkdir()
    with run_stack(lan, video_store, runtime) as running:
        yield running


@pytest.fixture
async def page_base(lan: Lan, player_files: Path) -> AsyncIterator[str]:
    async with serve_player(lan.host_address) as base:
        yield base


@pytest.fixture
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as running:
        yield running
