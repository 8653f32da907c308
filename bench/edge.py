"""The Shoal edge against nginx `proxy_cache`: cache hits for a 1 KB playlist and a 1 MB segment.

One Shoal origin (a temporary filesystem store) feeds both a Shoal edge (`shoal edge`, admission
`always`) and an nginx configured as the equivalent caching proxy (`proxy_cache`, `proxy_cache_lock
on`, the origin's Cache-Control honoured). Both are warmed until a request is a hit, then driven in
turn by wrk: each server pinned to CPU 0, wrk to CPU 1, the same connection counts, medians over
`--runs` (the runs of the two servers interleave, so drift on a shared machine hits both alike).

Requires `nginx` (Debian/Ubuntu package `nginx-light` or `nginx`), `wrk` (package `wrk`) and
`taskset` (util-linux) on PATH; exits 2 naming what is missing. Nothing is installed here.

wrk sends the same request head again and again, which the Shoal edge answers from a rendered
replay (`edge.http1._Replay`); real players' heads differ more. So the playlist is also measured
with a head that differs on every request (`playlist_1kb_varied`: a counter in `X-Request-Id`,
added by a wrk Lua script for both servers), the Shoal edge's general path.

The origin is started with a playlist max-age of one hour (the default is 2 s) so that both caches
serve pure hits for the whole run: revalidations would measure the origin, not the cache.

    .venv/bin/python bench/edge.py [--runs 3] [--duration 10] [--connections 64 256]
"""

import argparse
import getpass
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

# Run as a script from anywhere: the content store comes from the project.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from origin.store.fs import FilesystemStore

ROOT = Path(__file__).resolve().parent.parent
SHOAL = ROOT / ".venv" / "bin" / "shoal"
SERVER_CPU = "0"
CLIENT_CPU = "1"
STARTUP_SECONDS = 20.0
PLAYLIST_SIZE = 1024
SEGMENT_SIZE = 1024 * 1024
EDGE_MEMORY_BYTES = 256 * 1024 * 1024
OBJECTS = {
    # name -> (path under /v/, size)
    "playlist_1kb": ("bench/360p/index.m3u8", PLAYLIST_SIZE),
    "segment_1mb": ("bench/360p/seg_00001.m4s", SEGMENT_SIZE),
}
VARIED = {"playlist_1kb_varied": "playlist_1kb"}
"""Measured with a request head that differs every time: name -> the object requested."""
VARYING_SCRIPT = """
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, {["X-Request-Id"] = tostring(n)})
end
"""
SERVERS = ("shoal", "nginx")


class BenchError(Exception):
    pass


class _Interrupted(Exception):
    """SIGTERM: unwind through every cleanup, like Ctrl-C."""


# ---- content ------------------------------------------------------------------------------------


def playlist_bytes(size: int) -> bytes:
    """A valid media playlist padded with comment lines to exactly `size` bytes."""
    head = (
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n"
        '#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.000,\nseg_00001.m4s\n'
    )
    tail = "#EXT-X-ENDLIST\n"
    pad = size - len(head) - len(tail)
    filler = ("#" + "x" * (pad - 2) + "\n") if pad >= 2 else ""
    text = head + filler + tail
    assert len(text) == size, len(text)
    return text.encode()


def write_objects(store_root: Path) -> None:
    store = FilesystemStore(store_root)
    try:
        store.put_bytes("videos/" + OBJECTS["playlist_1kb"][0], playlist_bytes(PLAYLIST_SIZE))
        store.put_bytes("videos/" + OBJECTS["segment_1mb"][0], os.urandom(SEGMENT_SIZE))
    finally:
        store.close()


# ---- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Processes:
    """Child processes, stopped (SIGTERM, then SIGKILL) in reverse order of start."""

    def __init__(self) -> None:
        self._children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self._children.append((name, child))
        return child

    def stop_all(self) -> None:
        for _, child in reversed(self._children):
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 10
        for _, child in reversed(self._children):
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._children.clear()


def wait_announced(path: Path, child: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise BenchError(f"{path.stem} exited with {child.returncode}:\n{log.read_text()}")
        try:
            record: dict[str, object] = json.loads(path.read_text())
            return record
        except (OSError, json.JSONDecodeError):
            time.sleep(0.05)
    raise BenchError(f"{path.stem} did not announce itself within {STARTUP_SECONDS:.0f} s")


def wait_listening(port: int, child: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise BenchError(f"nginx exited with {child.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nginx did not listen on port {port} within {STARTUP_SECONDS:.0f} s")


def pinned(argv: list[str], cpu: str) -> list[str]:
    return ["taskset", "-c", cpu, *argv]


def start_origin(procs: Processes, tmp: Path) -> str:
    announce, log = tmp / "origin.json", tmp / "origin.log"
    argv = [
        str(SHOAL), "origin", "--port", "0", "--announce", str(announce),
        "--set", f'store.path="{tmp / "store"}"',
        "--set", f'uploads.catalog_path="{tmp / "catalog.sqlite"}"',
        "--set", f'uploads.staging_path="{tmp / "uploads"}"',
        "--set", "origin.playlist_max_age=3600",
        "--set", 'log.level="warning"',
    ]  # fmt: skip
    # The origin is not measured: it runs on the client's CPU, away from the servers'.
    child = procs.start("origin", pinned(argv, CLIENT_CPU), log)
    return str(wait_announced(announce, child, log)["url"])


def start_shoal_edge(procs: Processes, tmp: Path, origin: str) -> tuple[str, int]:
    announce, log = tmp / "edge.json", tmp / "edge.log"
    argv = [
        str(SHOAL), "edge", "--upstream", origin, "--port", "0", "--announce", str(announce),
        "--set", 'edge.admission="always"',
        "--set", f"edge.memory_bytes={EDGE_MEMORY_BYTES}",
        "--set", 'log.level="warning"',
    ]  # fmt: skip
    child = procs.start("shoal edge", pinned(argv, SERVER_CPU), log)
    record = wait_announced(announce, child, log)
    return str(record["url"]), child.pid


def nginx_config(tmp: Path, port: int, origin: str) -> str:
    # Running as root, nginx would hand its worker to `nobody`, who cannot write the temp dir.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    proxy_cache_path {tmp}/nginx-cache levels=1:2 keys_zone=bench:10m max_size=1g
                     inactive=1h use_temp_path=off;
    upstream origin {{ server {origin.removeprefix("http://")}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"""


def start_nginx(procs: Processes, tmp: Path, origin: str) -> str:
    port = free_port()
    conf, log = tmp / "nginx.conf", tmp / "nginx.log"
    conf.write_text(nginx_config(tmp, port, origin))
    argv = ["nginx", "-p", str(tmp), "-c", str(conf)]
    child = procs.start("nginx", pinned(argv, SERVER_CPU), log)
    wait_listening(port, child, log)
    return f"http://127.0.0.1:{port}"


# ---- warming ------------------------------------------------------------------------------------


def fetch(base: str, path: str) -> tuple[int, dict[str, str], int]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, len(body)
    finally:
        connection.close()


def warm(server: str, base: str, path: str, size: int) -> None:
    for _ in range(3):
        status, headers, length = fetch(base, path)
        if status != 200 or length != size:
            raise BenchError(f"{server} {path}: status {status}, {length} bytes (want {size})")
    if server == "shoal":
        verdict = headers.get("cache-status", "")
        hit = "hit" in verdict
    else:
        verdict = headers.get("x-cache-status", "")
        hit = verdict == "HIT"
    if not hit:
        raise BenchError(f"{server} {path}: third request was not a hit ({verdict!r})")


# ---- wrk ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    requests_per_s: float
    bytes_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> Run:
    def find(pattern: str) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"wrk output lacks {pattern!r}:\n{output}")
        return match[1]

    transfer = re.fullmatch(r"([\d.]+)([KMGT]?B)", find(r"^Transfer/sec:\s+(\S+)"))
    if transfer is None:
        raise BenchError(f"cannot read wrk transfer rate:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Run(
        requests_per_s=float(find(r"^Requests/sec:\s+([\d.]+)")),
        bytes_per_s=float(transfer[1]) * _SIZES[transfer[2]],
        p50_ms=_duration_ms(find(r"^\s+50%\s+(\S+)")),
        p99_ms=_duration_ms(find(r"^\s+99%\s+(\S+)")),
        errors=errors + (int(non2xx[1]) if non2xx else 0),
    )


def run_wrk(url: str, connections: int, duration: int, script: Path | None = None) -> Run:
    options = [] if script is None else ["-s", str(script)]
    argv = pinned(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", *options, url],
        CLIENT_CPU,
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


@dataclass(frozen=True)
class Result:
    requests_per_s: float
    bytes_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def median_of(runs: list[Run]) -> Result:
    return Result(
        requests_per_s=statistics.median(r.requests_per_s for r in runs),
        bytes_per_s=statistics.median(r.bytes_per_s for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
    )


def peak_rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) if match else None


# ---- main ---------------------------------------------------------------------------------------


def check_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        print(
            f"bench edge: missing {', '.join(missing)} on PATH; install the Debian/Ubuntu "
            "packages nginx-light (or nginx) and wrk (taskset is in util-linux)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    require_shoal_and_two_cpus("edge", "wrk")


def require_shoal_and_two_cpus(bench: str, client: str) -> None:
    """Exit 2 unless the venv's `shoal` exists and two CPUs are usable (server and `client`)."""
    if not SHOAL.exists():
        print(f"bench {bench}: {SHOAL} not found; run `make venv` first", file=sys.stderr)
        raise SystemExit(2)
    if len(os.sched_getaffinity(0)) < 2:
        needs = f"needs two CPUs (server on CPU 0, {client} on CPU 1)"
        print(f"bench {bench}: {needs}", file=sys.stderr)
        raise SystemExit(2)


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    def on_term(signum: int, frame: FrameType | None) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def bench(args: argparse.Namespace) -> None:
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="shoal-bench-edge-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            write_objects(tmp / "store")
            origin = start_origin(procs, tmp)
            shoal, edge_pid = start_shoal_edge(procs, tmp, origin)
            bases = {"shoal": shoal, "nginx": start_nginx(procs, tmp, origin)}
            for server, base in bases.items():
                for path, size in OBJECTS.values():
                    warm(server, base, "/v/" + path, size)
            print(f"origin {origin}, shoal edge {shoal} (pid {edge_pid}), nginx {bases['nginx']}")
            print(
                f"server on CPU {SERVER_CPU}, wrk -t1 on CPU {CLIENT_CPU}, "
                f"{args.duration} s x {args.runs} runs, medians\n"
            )
            script = tmp / "varying.lua"
            script.write_text(VARYING_SCRIPT)
            results = measure(args, bases, script)
            rss = peak_rss_kib(edge_pid)
        finally:
            procs.stop_all()
    report(results, args.connections, rss)


def measure(
    args: argparse.Namespace, bases: dict[str, str], varying_script: Path
) -> dict[tuple[str, int, str], Result]:
    results: dict[tuple[str, int, str], Result] = {}
    header = (
        f"{'object':<20}{'conns':>6}{'server':>8}{'req/s':>12}{'MB/s':>10}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    )
    print(header)
    print("-" * len(header))
    for connections in args.connections:
        for name in [*OBJECTS, *VARIED]:
            path = OBJECTS[VARIED.get(name, name)][0]
            script = varying_script if name in VARIED else None
            runs: dict[str, list[Run]] = {server: [] for server in SERVERS}
            for _ in range(args.runs):
                for server in SERVERS:
                    url = bases[server] + "/v/" + path
                    runs[server].append(run_wrk(url, connections, args.duration, script))
            for server in SERVERS:
                result = median_of(runs[server])
                results[(name, connections, server)] = result
                print(
                    f"{name:<20}{connections:>6}{server:>8}{result.requests_per_s:>12,.0f}"
                    f"{result.bytes_per_s / 1e6:>10,.1f}{result.p50_ms:>9.2f}"
                    f"{result.p99_ms:>9.2f}{result.errors:>8}",
                    flush=True,
                )
    return results


def report(
    results: dict[tuple[str, int, str], Result], connections: list[int], rss_kib: int | None
) -> None:
    print()
    print(f"shoal edge peak RSS (VmHWM): {'?' if rss_kib is None else f'{rss_kib / 1024:.1f} MiB'}")
    base = connections[0]
    most = max(connections)
    lines: list[tuple[str, float, float]] = []
    for name in [*OBJECTS, *VARIED]:
        shoal, nginx = results[(name, base, "shoal")], results[(name, base, "nginx")]
        lines.append((f"{name}_req_per_s", shoal.requests_per_s, nginx.requests_per_s))
    for name in OBJECTS:
        shoal, nginx = results[(name, most, "shoal")], results[(name, most, "nginx")]
        lines.append((f"{name.split('_')[0]}_p99_ms_{most}c", shoal.p99_ms, nginx.p99_ms))
    for metric, value, peer in lines:
        ratio = value / peer if peer else float("inf")
        shown = f"{value:.0f}" if metric.endswith("per_s") else f"{value:.2f}"
        print(f"bench edge: {metric}={shown} ratio={ratio:.2f}x vs nginx")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument(
        "--connections",
        type=int,
        nargs="+",
        default=[64, 256],
        help="wrk connection counts (the first gives the req/s lines, the largest the p99 lines)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.duration < 1 or min(args.connections) < 1:
        parser.error("--runs, --duration and --connections must be positive")
    check_tools()
    try:
        with sigterm_unwinds():
            bench(args)
    except (KeyboardInterrupt, _Interrupted):
        print("bench edge: interrupted", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench edge: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
