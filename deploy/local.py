"""`shoal up`: the whole stack on one machine, as separate processes on free ports.

Nodes start in dependency order (origin, the P2P tracker, regional nodes, edges), each as the
same `shoal origin`, `shoal tracker` or `shoal edge` command an operator would run, bound to
port 0 and announcing its real URL. The tracker admits only the swarms the origin registered.
The stack is up when every node answers /healthz. A stop signal, or any node dying, stops all
of them: edges first, then SIGKILL for any that ignore SIGTERM. Each child also asks the kernel
to SIGTERM it if this process dies, so even a SIGKILLed `shoal up` leaves no orphans.
"""

import dataclasses
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from core.config import ShoalConfig, dump_config
from deploy.workers import die_with_parent

STOP_GRACE_SECONDS = 10.0


class StackError(RuntimeError):
    """A node failed to start or died; the message says which and why."""


@dataclass
class Node:
    name: str
    kind: str
    upstreams: list[str]
    process: subprocess.Popen[bytes]
    announce: Path
    url: str = ""
    upstream_names: list[str] = field(default_factory=list)


class LocalStack:
    """The processes of one `shoal up`, started and stopped together."""

    def __init__(self, config: ShoalConfig, runtime_dir: Path) -> None:
        # Admin tokens for this run only: the purge and trending APIs are live but private.
        purge, hint = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        config = dataclasses.replace(
            config,
            edge=dataclasses.replace(config.edge, purge_token=purge, hint_token=hint),
            regional=dataclasses.replace(config.regional, purge_token=purge, hint_token=hint),
        )
        self.tokens = {"purge": purge, "trending": hint}
        self._config = config
        self._runtime_dir = runtime_dir
        self._config_file = runtime_dir / "stack.toml"
        self._config_file.write_text(dump_config(config))
        self.nodes: list[Node] = []

    def start(self) -> None:
        up = self._config.up
        origin = self._spawn("origin", "origin", [])
        self._spawn(
            "tracker",
            "tracker",
            [],
            overrides=["tracker.allow_list=true", f"tracker.origin_url={origin.url}"],
        )
        regionals = [
            self._spawn(f"regional-{i}", "regional", [origin]) for i in range(1, up.regionals + 1)
        ]
        for i in range(1, up.edges + 1):
            self._spawn(f"edge-{i}", "edge", regionals, fallback=origin)

    def _spawn(
        self,
        name: str,
        kind: str,
        upstreams: list[Node],
        fallback: Node | None = None,
        overrides: list[str] | None = None,
    ) -> Node:
        announce = self._runtime_dir / f"{name}.json"
        command = [sys.executable, "-m", "deploy.cli"]
        command += [kind] if kind in ("origin", "tracker") else ["edge", "--tier", kind]
        command += ["--config", str(self._config_file), "--name", name, "--port", "0"]
        for override in overrides or []:
            command += ["--set", override]
        command += ["--announce", str(announce)]
        for upstream in upstreams:
            command += ["--upstream", upstream.url]
        if fallback is not None:
            command += ["--origin", fallback.url]
        process = subprocess.Popen(command, preexec_fn=die_with_parent, stdin=subprocess.DEVNULL)
        node = Node(name, kind, [u.url for u in upstreams], process, announce)
        node.upstream_names = [u.name for u in upstreams]
        self.nodes.append(node)
        self._wait_ready(node)
        return node

    def _wait_ready(self, node: Node) -> None:
        deadline = time.monotonic() + self._config.up.start_timeout
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                raise StackError(f"{node.name} exited with status {node.process.returncode}")
            if not node.url and node.announce.exists():
                node.url = json.loads(node.announce.read_text())["url"]
            if node.url and healthy(node.url):
                return
            time.sleep(0.05)
        raise StackError(f"{node.name} was not healthy after {self._config.up.start_timeout}s")

    def first_dead(self) -> Node | None:
        return next((n for n in self.nodes if n.process.poll() is not None), None)

    def stop(self) -> None:
        # Edges first, so no node is left forwarding to one that is already gone.
        stop_in_reverse([node.process for node in self.nodes])


def stop_in_reverse(
    processes: Sequence["subprocess.Popen[bytes]"], grace: float = STOP_GRACE_SECONDS
) -> None:
    """SIGTERM the processes, last started first; SIGKILL those still running after `grace`."""
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in reversed(processes):
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def healthy(url: str) -> bool:
    """Whether the node at `url` answers /healthz with 200 within a second."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _status(stack: LocalStack, videos: list[str]) -> dict[str, object]:
    edges = [n for n in stack.nodes if n.kind == "edge"]
    tracker = next(n for n in stack.nodes if n.kind == "tracker")
    return {
        "nodes": [
            {
                "name": n.name,
                "kind": n.kind,
                "url": n.url,
                "pid": n.process.pid,
                "upstreams": n.upstream_names,
            }
            for n in stack.nodes
        ],
        "tokens": stack.tokens,
        # p2p-media-loader's announceTrackers; players set swarmId to "shoal-<video>".
        "tracker": tracker.url.replace("http://", "ws://", 1) + "/",
        "playlists": [
            {"video": video, "edge": edge.name, "url": f"{edge.url}/v/{video}/master.m3u8"}
            for video in videos
            for edge in edges
        ],
    }


def _print_table(status: dict[str, object]) -> None:
    nodes = status["nodes"]
    playlists = status["playlists"]
    assert isinstance(nodes, list) and isinstance(playlists, list)
    print("\nShoal is up. Nodes:")
    for node in nodes:
        via = f"  -> {', '.join(node['upstreams'])}" if node["upstreams"] else ""
        print(f"  {node['name']:<12} {node['kind']:<9} {node['url']}{via}")
    print("\nPlayable master playlists (open in any HLS player, e.g. ffplay or VLC):")
    for playlist in playlists:
        print(f"  {playlist['video']:<16} via {playlist['edge']:<8} {playlist['url']}")
    print(f"\nP2P tracker (p2p-media-loader announceTrackers): {status['tracker']}")
    print('  players set swarmId to "shoal-<video>"')
    print("\nCtrl-C stops everything.", flush=True)


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def run_stack(config: ShoalConfig, *, store_root: Path, status_file: Path | None) -> int:
    """Run the local stack until a stop signal; 0 on a clean stop, 1 if a node failed."""
    from origin.samples import ensure_samples
    from origin.store import open_store

    store = open_store(config.store, store_root)
    try:
        videos = ensure_samples(store, config.up.samples, progress=print)
    finally:
        store.close()

    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    with tempfile.TemporaryDirectory(prefix="shoal-up-") as runtime:
        stack = LocalStack(config, Path(runtime))
        try:
            stack.start()
            status = _status(stack, videos)
            _print_table(status)
            if status_file is not None:
                status_file.write_text(json.dumps(status, indent=2))
            while (dead := stack.first_dead()) is None:
                time.sleep(0.2)
            print(
                f"shoal: {dead.name} exited with status {dead.process.returncode}; stopping",
                file=sys.stderr,
            )
            return 1
        except StackError as exc:
            print(f"shoal: {exc}; stopping", file=sys.stderr)
            return 1
        except _Stop:
            print("\nshoal: stopping", flush=True)
            return 0
        finally:
            # Further signals must not interrupt the shutdown half way.
            for signum in previous:
                signal.signal(signum, signal.SIG_IGN)
            stack.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
