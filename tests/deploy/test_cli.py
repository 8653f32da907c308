"""The `shoal` command: help for every subcommand, layered configuration, exit status 2."""

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from core.config import ShoalConfig, load_config
from core.http.signing import Verdict, verify_target
from deploy.cli import EXIT_CONFIG_ERROR, main, resolve_config
from tests.support import S3Endpoint, free_port, uses_seaweedfs


def _shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "command", ["up", "origin", "edge", "tracker", "samples", "sign", "config"]
)
def test_every_subcommand_has_help(command: str) -> None:
    result = _shoal(command, "--help")
    assert result.returncode == 0
    assert f"usage: shoal {command}" in result.stdout
    assert "--config FILE" in result.stdout


def test_config_prints_every_default_as_loadable_toml() -> None:
    result = _shoal("config")
    assert result.returncode == 0
    assert load_config(tomllib.loads(result.stdout)) == ShoalConfig()


def test_file_then_overrides_then_flags(tmp_path: Path) -> None:
    config_file = tmp_path / "shoal.toml"
    config_file.write_text('[edge]\nport = 9000\nhost = "0.0.0.0"\n[store]\nbackend = "s3"\n')
    config = resolve_config(
        config_file,
        ["edge.port=9100", "store.s3.bucket=videos", 'edge.upstreams=["http://r:1"]'],
        {"edge": {"port": 9200}},
    )
    assert (config.edge.host, config.edge.port) == ("0.0.0.0", 9200)
    assert config.store.backend == "s3"
    assert config.store.s3.bucket == "videos"
    assert config.edge.upstreams == ["http://r:1"]


@pytest.mark.parametrize(
    ("contents", "args", "message"),
    [
        ("[edge]\nprot = 1\n", [], "edge.prot: unknown key"),
        ("[origin]\nport = 'x'\n", [], "origin.port: expected integer, got string"),
        ("not toml = = =\n", [], "is not valid TOML"),
        ("", ["--set", "store.backend=nfs"], "store.backend: expected one of 'fs', 's3'"),
        ("", ["--set", "nonsense"], "expected an override of the form section.key=value"),
    ],
)
def test_invalid_configuration_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    contents: str,
    args: list[str],
    message: str,
) -> None:
    config_file = tmp_path / "shoal.toml"
    config_file.write_text(contents)
    for command in ("config", "origin", "edge"):
        assert main([command, "--config", str(config_file), *args]) == EXIT_CONFIG_ERROR
        error = capsys.readouterr().err
        assert error.startswith("shoal: invalid configuration: ")
        assert message in error


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--config", str(tmp_path / "absent.toml")]) == EXIT_CONFIG_ERROR
    assert "cannot read config file" in capsys.readouterr().err


def test_bad_port_flag_exits_2_naming_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["edge", "--port", "70000"]) == EXIT_CONFIG_ERROR
    assert "edge.port: expected a value <= 65535" in capsys.readouterr().err


@uses_seaweedfs
def test_origin_serves_samples_from_s3(seaweedfs: S3Endpoint, tmp_path: Path) -> None:
    """S3 end to end: `shoal samples` publishes, `shoal origin` serves, ffprobe plays."""
    config_file = tmp_path / "shoal.toml"
    config_file.write_text(
        f"""
[store]
backend = "s3"
[store.s3]
endpoint_url = "{seaweedfs.url}"
bucket = "{seaweedfs.bucket}"
region = "{seaweedfs.region}"
prefix = "cli-{tmp_path.name}/"
access_key_id = "{seaweedfs.access_key_id}"
secret_access_key = "{seaweedfs.secret_access_key}"
"""
    )
    published = _shoal("samples", "--config", str(config_file), "--count", "1")
    assert published.returncode == 0, published.stderr
    assert "/v/sample-testsrc/master.m3u8" in published.stdout

    announce = tmp_path / "origin.json"
    origin = subprocess.Popen(
        [
            *(sys.executable, "-m", "deploy.cli", "origin", "--config", str(config_file)),
            *("--port", "0", "--announce", str(announce)),
        ],
        stderr=subprocess.PIPE,
        text=True,
        # The origin's catalog and upload staging live in the data directory: the test's own.
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")},
    )
    try:
        deadline = time.monotonic() + 30
        while not announce.exists():
            assert origin.poll() is None, origin.stderr.read() if origin.stderr else ""
            assert time.monotonic() < deadline, "origin did not announce itself"
            time.sleep(0.05)
        url = json.loads(announce.read_text())["url"] + "/v/sample-testsrc/master.m3u8"
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-of", "json", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.returncode == 0, probe.stderr
        heights = {s.get("height") for s in json.loads(probe.stdout)["streams"]}
        assert {640, 960, 1280} <= heights
    finally:
        origin.send_signal(signal.SIGTERM)
        origin.wait(timeout=15)
    assert origin.returncode == 0


def test_an_unreachable_s3_store_is_a_clear_error(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = _shoal(
        "samples", "--set", "store.backend=s3", "--set", f"store.s3.endpoint_url={closed}"
    )
    assert result.returncode == 1
    assert result.stderr.startswith("shoal: content store unavailable:")
    assert closed in result.stderr
    assert "Traceback" not in result.stderr


def test_sign_prints_a_url_the_nodes_accept(capsys: pytest.CaptureFixture[str]) -> None:
    keys = '["old-key", "new-key"]'
    args = ["sign", "/v/abc/master.m3u8", "--set", f"origin.signing_keys={keys}", "--ttl", "60"]
    assert main([*args, "--base", "http://edge:8080"]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("http://edge:8080/v/abc/master.m3u8?")
    target = url.removeprefix("http://edge:8080")
    now = time.time()
    assert verify_target(target, now, ["old-key"]) is Verdict.OK
    assert verify_target(target.replace("master", "360p/seg_00001"), now, ["old-key"]) is Verdict.OK
    assert verify_target(target, now + 61, ["old-key"]) is Verdict.EXPIRED
    assert verify_target(target, now, ["new-key"]) is Verdict.FORGED


def test_sign_needs_a_key_and_a_video_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sign", "/v/abc/master.m3u8"]) == EXIT_CONFIG_ERROR
    assert "origin.signing_keys" in capsys.readouterr().err
    assert main(["sign", "/etc/passwd", "--set", 'origin.signing_keys=["k"]']) == EXIT_CONFIG_ERROR
    assert "expected a path like /v/<video>/" in capsys.readouterr().err


def test_tracker_serves_websocket_announces(tmp_path: Path) -> None:
    """`shoal tracker` on a free port answers a p2p-media-loader announce over WebSocket."""
    import asyncio

    import aiohttp

    announce = tmp_path / "tracker.json"
    tracker = subprocess.Popen(
        [
            *(sys.executable, "-m", "deploy.cli", "tracker", "--port", "0"),
            *("--announce", str(announce), "--set", "tracker.announce_interval=45"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not announce.exists():
            assert tracker.poll() is None, tracker.stderr.read() if tracker.stderr else ""
            assert time.monotonic() < deadline, "tracker did not announce itself"
            time.sleep(0.05)
        url = json.loads(announce.read_text())["url"]

        async def exchange() -> dict[str, object]:
            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                await ws.send_json(
                    {
                        "action": "announce",
                        "event": "started",
                        "info_hash": "i/a4IGfs0WPVgc3Sn/iT",
                        "peer_id": "-PM0203-P2VAIC8JtRoj",
                        "numwant": 5,
                        "offers": [],
                    }
                )
                reply: dict[str, object] = await asyncio.wait_for(ws.receive_json(), 10)
                return reply

        assert asyncio.run(exchange()) == {
            "action": "announce",
            "interval": 45,
            "info_hash": "i/a4IGfs0WPVgc3Sn/iT",
            "complete": 0,
            "incomplete": 1,
        }
    finally:
        tracker.send_signal(signal.SIGTERM)
        tracker.wait(timeout=15)
    assert tracker.returncode == 0


def test_tracker_with_an_unreadable_geoip_db_exits_2(tmp_path: Path) -> None:
    result = _shoal("tracker", "--set", f"tracker.geoip_db={tmp_path / 'absent.mmdb'}")
    assert result.returncode == EXIT_CONFIG_ERROR
    assert "tracker.geoip_db" in result.stderr
