"""`shoal up` as operators run it: a subprocess, real nodes, ffprobe via an edge, clean stop."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("shoal-up")]


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    status: dict[str, list[dict[str, object]]]

    def pids(self) -> list[int]:
        return [int(str(node["pid"])) for node in self.status["nodes"]]


def _start(data_home: Path, status_file: Path, *extra: str) -> RunningStack:
    env = {**os.environ, "XDG_DATA_HOME": str(data_home)}
    env.pop("SHOAL_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "up", "--status-file", str(status_file), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240  # the first run generates the sample library
    while not status_file.exists():
        if process.poll() is not None:
            pytest.fail(f"shoal up exited {process.returncode}:\n{process.stdout.read()}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("shoal up did not come up in time")
        time.sleep(0.1)
    return RunningStack(process, json.loads(status_file.read_text()))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@pytest.fixture(scope="module")
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-data")


@pytest.fixture(scope="module")
def stack(data_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = _start(data_home, tmp_path_factory.mktemp("status") / "status.json")
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def test_runs_origin_tracker_one_regional_and_two_edges(stack: RunningStack) -> None:
    kinds = [node["kind"] for node in stack.status["nodes"]]
    assert kinds == ["origin", "tracker", "regional", "edge", "edge"]
    nodes = {node["name"]: node for node in stack.status["nodes"]}
    assert nodes["regional-1"]["upstreams"] == ["origin"]
    assert nodes["edge-1"]["upstreams"] == nodes["edge-2"]["upstreams"] == ["regional-1"]
    urls = {node["url"] for node in stack.status["nodes"]}
    assert len(urls) == 5
    # Three sample videos, each playable via each edge.
    videos = {p["video"] for p in stack.status["playlists"]}
    assert len(videos) == 3
    assert len(stack.status["playlists"]) == 6


def test_ffprobe_plays_the_master_playlist_through_an_edge(stack: RunningStack) -> None:
    for playlist in stack.status["playlists"][:2]:
        result = subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(playlist["url"])],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        streams = json.loads(result.stdout)["streams"]
        sizes = {(s["width"], s["height"]) for s in streams if s["codec_type"] == "video"}
        assert sizes == {(360, 640), (540, 960), (720, 1280)}
        assert any(s["codec_type"] == "audio" for s in streams)


def test_segments_travel_edge_regional_origin(stack: RunningStack) -> None:
    playlist = str(stack.status["playlists"][0]["url"])
    # Segment names carry a per-encode tag: the rung's playlist says what the first one is.
    media_url = playlist.replace("master.m3u8", "360p/index.m3u8")
    with urllib.request.urlopen(media_url, timeout=10) as response:
        lines = response.read().decode().splitlines()
    first = next(line for line in lines if line and not line.startswith("#"))
    segment_url = playlist.replace("master.m3u8", f"360p/{first}")
    with urllib.request.urlopen(segment_url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Via"] == "1.1 regional-1, 1.1 edge-1"
        assert response.headers["Content-Type"] == "video/iso.segment"
        assert "immutable" in response.headers["Cache-Control"]
        assert len(response.read()) == int(response.headers["Content-Length"])


async def test_the_tracker_admits_the_swarms_of_the_samples_only(stack: RunningStack) -> None:
    nodes = {node["name"]: node for node in stack.status["nodes"]}
    video = str(stack.status["playlists"][0]["video"])
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{nodes['origin']['url']}/api/videos/{video}/swarms") as response:
            swarms = (await response.json())["swarms"]
        assert swarms, "the origin registered no swarm for a sample"
        tracker = str(stack.status["tracker"])
        async with session.ws_connect(tracker) as ws:
            for info_hash, allowed in ((swarms[0]["info_hash"], True), ("u" * 20, False)):
                await ws.send_json(
                    {
                        "action": "announce",
                        "event": "started",
                        "info_hash": info_hash,
                        "peer_id": "-PM0203-abcdefghijkl",
                        "numwant": 5,
                        "uploaded": 0,
                        "downloaded": 0,
                        "offers": [],
                    }
                )
                reply = await ws.receive_json(timeout=10)
                assert ("failure reason" not in reply) is allowed, reply
                assert reply["info_hash"] == info_hash


def test_sigterm_stops_every_node_cleanly(stack: RunningStack) -> None:
    pids = stack.pids()
    assert all(_alive(pid) for pid in pids)
    stack.process.send_signal(signal.SIGTERM)
    output, _ = stack.process.communicate(timeout=30)
    assert stack.process.returncode == 0, output
    assert "stopping" in output
    assert _wait_gone(pids, 5) == []


def test_nodes_die_with_a_killed_shoal_up(data_home: Path, tmp_path: Path) -> None:
    # The samples exist by now (module fixture order), so this start is quick.
    running = _start(data_home, tmp_path / "status.json", "--set", "up.edges=1")
    pids = running.pids()
    assert len(pids) == 4
    running.process.kill()
    running.process.wait()
    assert _wait_gone(pids, 10) == []


def test_invalid_configuration_exits_2_naming_the_key(data_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "shoal.toml"
    bad.write_text("[up]\nedges = 'two'\n")
    result = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "up", "--config", str(bad)],
        env={**os.environ, "XDG_DATA_HOME": str(data_home)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "up.edges: expected integer, got string" in result.stderr
