"""The Shoal tracker against the npm `bittorrent-tracker` server: announce-and-relay responses per
second and memory per WebSocket connection.

Both trackers are driven by the same Node load generator (`bench/tracker_load/load.mjs`, on the
`ws` package): `--connections` WebSocket peers in swarms of `--swarm` peers, speaking
p2p-media-loader 2.3's messages (shared/reference/p2p.md 1a). Each peer announces with
`--offers` offers (a 760-character SDP each, a 20-character latin-1 `offer_id`); every relayed
offer is answered by the peer that got it, and each peer announces again as soon as its previous
announce is answered (one announce in flight per peer). A response is anything the tracker sends
that the protocol asks for: announce replies, relayed offers and relayed answers; `failure
reason`s are counted apart (there should be none).

Each run starts a fresh tracker pinned to CPU 0 (`shoal tracker`, then `node` running
`bittorrent-tracker/server` 11, WebSocket only), and the generator pinned to CPU 1:

1. memory: the server's RSS once it listens, then again when every peer has joined and the
   tracker has gone quiet (the offers of the join answered); the difference over the connection
   count is the memory per connection (the peers' swarm entries included);
2. throughput: `--warmup` s of load, then the responses of `--duration` s are counted, while the
   generator's and the server's CPU use are read (the generator must stay below one core, or it
   is what is measured: a warning says so). On a machine shared with other work the server may
   get less than its CPU: responses per CPU-second of the server is printed too, the figure
   least moved by that.

The two servers' runs interleave (`--runs` each, medians), so drift on a shared machine hits both
alike. The Shoal tracker runs with its per-address and per-swarm rate limits off
(`tracker.ip_rate=0`, `tracker.swarm_rate=0`): every peer here comes from 127.0.0.1, and
bittorrent-tracker has no such limits.

Requires `node` (20+) and `taskset` (util-linux) on PATH, two CPUs, and the generator's npm
packages, installed once from the lock file (nothing is downloaded at run time):

    npm ci --prefix bench/tracker_load --ignore-scripts

(`--ignore-scripts`: bittorrent-tracker's WebRTC client pulls node-datachannel, whose install
script downloads a binary; the server and the generator never load it.) Exits 2 naming what is
missing.

    .venv/bin/python bench/tracker.py [--runs 3] [--duration 10] [--connections 1000] [--swarm 20]
"""

import argparse
import json
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script from anywhere: the process helpers come from the edge bench.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.edge import (
    SHOAL,
    BenchError,
    Processes,
    _Interrupted,
    pinned,
    require_shoal_and_two_cpus,
    sigterm_unwinds,
    wait_announced,
)

LOAD_DIR = Path(__file__).resolve().parent / "tracker_load"
GENERATOR = LOAD_DIR / "load.mjs"
PEER_SERVER = LOAD_DIR / "server.mjs"
NPM_PACKAGES = ("bittorrent-tracker", "ws")
SERVER_CPU = "0"
CLIENT_CPU = "1"
STARTUP_SECONDS = 20.0
JOIN_SECONDS = 90.0
SETTLE_SECONDS = 1.0
"""Pause between the end of the join and the RSS reading (late frees, the GC's turn)."""
GENERATOR_BUSY = 0.9
"""Generator CPU (cores) past which it may be the bottleneck."""
SERVERS = ("shoal", "bittorrent-tracker")
PEER = "bittorrent-tracker"


# ---- servers ------------------------------------------------------------------------------------


def start_shoal(procs: Processes, tmp: Path, connections: int) -> tuple[str, int]:
    announce, log = tmp / "tracker.json", tmp / "tracker.log"
    announce.unlink(missing_ok=True)
    argv = [
        str(SHOAL), "tracker", "--port", "0", "--announce", str(announce),
        "--set", "tracker.ip_rate=0",
        "--set", "tracker.swarm_rate=0",
        "--set", f"tracker.max_connections={max(connections * 2, 10_000)}",
        "--set", 'log.level="warning"',
    ]  # fmt: skip
    child = procs.start("shoal tracker", pinned(argv, SERVER_CPU), log)
    record = wait_announced(announce, child, log)
    return str(record["url"]), child.pid


def start_peer(procs: Processes, tmp: Path) -> tuple[str, int]:
    log = tmp / "bittorrent-tracker.log"
    argv = pinned(["node", str(PEER_SERVER)], SERVER_CPU)
    child = procs.start(PEER, argv, log)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise BenchError(f"{PEER} exited with {child.returncode}:\n{log.read_text()}")
        line = log.read_text().partition("\n")[0]
        if line.startswith("{"):
            return str(json.loads(line)["url"]), child.pid
        time.sleep(0.05)
    raise BenchError(f"{PEER} did not listen within {STARTUP_SECONDS:.0f} s")


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise BenchError(f"no VmRSS for process {pid}")
    return int(match[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- one run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    responses_per_s: float
    kib_per_connection: float
    generator_cpu: float
    server_cpu: float
    failures: int
    closed_early: int


class _Phases:
    """The generator's JSON lines, one per phase, each awaited with a deadline."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        self._child = child
        self._fd = child.stdout.fileno()
        self._buffer = b""

    def expect(self, phase: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"the load generator did not reach {phase!r} in {timeout:.0f} s")
            if select.select([self._fd], [], [], left)[0]:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    code = self._child.wait(timeout=10)
                    raise BenchError(f"the load generator exited with {code} before {phase!r}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        record = json.loads(line)
        if record.get("phase") != phase:
            raise BenchError(f"expected the generator's {phase!r}, got {line.decode()}")
        return record


def one_run(server: str, tmp: Path, args: argparse.Namespace) -> Run:
    procs = Processes()
    try:
        if server == "shoal":
            url, pid = start_shoal(procs, tmp, args.connections)
        else:
            url, pid = start_peer(procs, tmp)
        time.sleep(0.5)
        base_kib = rss_kib(pid)
        ws_url = url.replace("http://", "ws://", 1) + "/announce"
        load = [
            "node", str(GENERATOR), "--url", ws_url,
            "--connections", str(args.connections), "--swarm", str(args.swarm),
            "--offers", str(args.offers), "--warmup", str(args.warmup),
            "--duration", str(args.duration),
        ]  # fmt: skip
        argv = pinned(load, CLIENT_CPU)
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as generator:
            try:
                assert generator.stdin is not None
                phases = _Phases(generator)
                phases.expect("joined", JOIN_SECONDS)
                time.sleep(SETTLE_SECONDS)
                joined_kib = rss_kib(pid)
                generator.stdin.write(b"go\n")
                generator.stdin.flush()
                phases.expect("counting", args.warmup + 30)
                cpu_before, clock = cpu_seconds(pid), time.monotonic()
                done = phases.expect("done", args.duration + 30)
                server_cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - clock)
                if generator.wait(timeout=30) != 0:
                    raise BenchError(f"the load generator exited with {generator.returncode}")
            finally:
                if generator.poll() is None:
                    generator.kill()
    finally:
        procs.stop_all()
    if done["failures"]:
        print(f"  {server}: failures {done['failure_reasons']}", file=sys.stderr)
    return Run(
        responses_per_s=float(done["responses_per_s"]),
        kib_per_connection=(joined_kib - base_kib) / args.connections,
        generator_cpu=float(done["cpu"]),
        server_cpu=server_cpu,
        failures=int(done["failures"]),
        closed_early=int(done["closed_early"]),
    )


# ---- main ---------------------------------------------------------------------------------------


def check_tools() -> None:
    missing = [tool for tool in ("node", "taskset") if shutil.which(tool) is None]
    if missing:
        print(
            f"bench tracker: missing {', '.join(missing)} on PATH; install the Debian/Ubuntu "
            "packages nodejs and npm (taskset is in util-linux)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    absent = [p for p in NPM_PACKAGES if not (LOAD_DIR / "node_modules" / p).is_dir()]
    if absent:
        print(
            f"bench tracker: npm packages {', '.join(absent)} not installed in {LOAD_DIR}; run "
            "`npm ci --prefix bench/tracker_load --ignore-scripts` in the repository",
            file=sys.stderr,
        )
        raise SystemExit(2)
    require_shoal_and_two_cpus("tracker", "load")


def bench(args: argparse.Namespace) -> dict[str, list[Run]]:
    print(
        f"{args.connections} peers in swarms of {args.swarm}, {args.offers} offers per announce; "
        f"server on CPU {SERVER_CPU}, load generator on CPU {CLIENT_CPU}; "
        f"{args.warmup} s warm-up + {args.duration} s x {args.runs} runs, medians\n"
    )
    header = (
        f"{'run':>4}{'server':>20}{'responses/s':>13}{'KiB/conn':>10}"
        f"{'server cpu':>12}{'gen cpu':>9}{'failures':>10}"
    )
    print(header)
    print("-" * len(header))
    runs: dict[str, list[Run]] = {server: [] for server in SERVERS}
    with tempfile.TemporaryDirectory(prefix="shoal-bench-tracker-") as tmpdir:
        for number in range(1, args.runs + 1):
            # Alternate who goes first: a slow spell of the machine then hits both alike.
            order = SERVERS if number % 2 else tuple(reversed(SERVERS))
            for server in order:
                run = one_run(server, Path(tmpdir), args)
                runs[server].append(run)
                print(
                    f"{number:>4}{server:>20}{run.responses_per_s:>13,.0f}"
                    f"{run.kib_per_connection:>10.1f}{run.server_cpu:>12.2f}"
                    f"{run.generator_cpu:>9.2f}{run.failures:>10}",
                    flush=True,
                )
    return runs


def report(runs: dict[str, list[Run]]) -> None:
    medians = {
        server: (
            statistics.median(r.responses_per_s for r in server_runs),
            statistics.median(r.kib_per_connection for r in server_runs),
            statistics.median(r.responses_per_s / r.server_cpu for r in server_runs),
            statistics.median(r.generator_cpu for r in server_runs),
        )
        for server, server_runs in runs.items()
    }
    print()
    for server, (rate, kib, per_cpu, generator_cpu) in medians.items():
        print(
            f"{server}: {rate:,.0f} responses/s ({per_cpu:,.0f} per CPU-second of the server), "
            f"{kib:.1f} KiB per connection, load generator {generator_cpu:.2f} CPU"
        )
        if generator_cpu > GENERATOR_BUSY:
            print(
                f"warning: the load generator used {generator_cpu:.2f} CPU against {server}: "
                "it may be the bottleneck",
                file=sys.stderr,
            )
        if any(r.closed_early for r in runs[server]):
            print(f"warning: {server} closed connections during the load", file=sys.stderr)
    shoal, peer = medians["shoal"], medians[PEER]
    for metric, index, shown in (
        ("responses_per_s", 0, f"{shoal[0]:.0f}"),
        ("responses_per_cpu_s", 2, f"{shoal[2]:.0f}"),
        ("kib_per_connection", 1, f"{shoal[1]:.1f}"),
    ):
        ratio = shoal[index] / peer[index] if peer[index] else float("inf")
        print(f"bench tracker: {metric}={shown} ratio={ratio:.2f}x vs {PEER}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per server (median)")
    parser.add_argument("--duration", type=int, default=10, help="seconds counted per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before counting")
    parser.add_argument("--connections", type=int, default=1000, help="WebSocket peers")
    parser.add_argument("--swarm", type=int, default=20, help="peers per info_hash")
    parser.add_argument("--offers", type=int, default=5, help="offers per announce")
    args = parser.parse_args(argv)
    if min(args.runs, args.duration, args.connections, args.swarm, args.offers) < 1:
        parser.error("--runs, --duration, --connections, --swarm and --offers must be positive")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    check_tools()
    try:
        with sigterm_unwinds():
            report(bench(args))
    except (KeyboardInterrupt, _Interrupted):
        print("bench tracker: interrupted", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench tracker: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
