"""Every core: a node served by N worker processes on one port (SO_REUSEPORT), supervised.

`shoal edge` with `workers` other than 1 runs this supervisor instead of serving itself. It
reserves the port (binding, without listening, a SO_REUSEPORT socket when the port is 0, so the
workers all bind the same number), forks the workers, and writes the node's announce file once
every worker is serving. The kernel spreads new connections over the workers' listening
sockets. Each worker is a whole cache node over its share of the budgets (`edge.app.WorkerSlot`):
its own memory tier, its share of the shared disk tier, its own coalescing of fetches (a node
sends at most one fetch per object per worker). Metrics are merged across workers on every
scrape (`edge.metrics`).

Signals, as operators know them from nginx:
- SIGTERM or SIGINT: stop. Each worker stops accepting, lets the responses in flight finish
  (`deploy.serve.SHUTDOWN_GRACE_SECONDS`), demotes its memory tier to disk and exits.
- SIGHUP: graceful reload. The configuration is read again; a new generation of workers is
  started and, once all of them serve, the old one is told to hand over (SIGUSR2: finish what
  is in flight, exit without writing its memory tier to disk, which the new generation has
  already indexed). An invalid configuration, or a generation that fails to start, leaves the
  old one serving. The number of workers stays what it was at start.
- A worker that dies is replaced; one that keeps dying (`MAX_RESTARTS` in `RESTART_WINDOW`
  seconds) stops the node with exit status 1.
"""

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.context import ForkContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from deploy.serve import SHUTDOWN_GRACE_SECONDS, write_announce
from edge.app import WorkerSlot
from edge.metrics import remove_snapshot

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 30.0
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
POLL_SECONDS = 0.1
_PR_SET_PDEATHSIG = 1

WorkerMain = Callable[[WorkerSlot, int, Path], None]
"""Runs one worker: its slot, the port to bind (with SO_REUSEPORT), its announce file."""


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Ask Linux to send `signum` to this process when its parent dies (no orphans)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum)


def worker_count(configured: int) -> int:
    """Workers for a `workers` setting: 0 means one per CPU this process may run on."""
    return configured or len(os.sched_getaffinity(0))


@dataclass
class _Worker:
    slot: WorkerSlot
    process: BaseProcess
    announce: Path
    started: float = field(default_factory=time.monotonic)


class _Stop(Exception):
    pass


class Supervisor:
    """The workers of one node, started, replaced, reloaded and stopped together."""

    def __init__(
        self,
        load: Callable[[], WorkerMain],
        count: int,
        *,
        host: str,
        port: int,
        kind: str,
        name: str,
        announce: Path | None,
    ) -> None:
        self._load = load
        self._count = count
        self._host = host
        self._kind = kind
        self._name = name
        self._announce = announce
        self._runtime = Path(tempfile.mkdtemp(prefix=f"shoal-{name}-workers-"))
        self._metrics = self._runtime / "metrics"
        self._metrics.mkdir()
        self._reservation = _reserve_port(host, port)
        self.port: int = self._reservation.getsockname()[1]
        self._generation = 0
        self._workers: list[_Worker] = []
        self._restarts: list[float] = []
        self._reload_requested = False

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit status."""
        previous = {
            signum: signal.signal(signum, handler)
            for signum, handler in (
                (signal.SIGTERM, self._on_stop),
                (signal.SIGINT, self._on_stop),
                (signal.SIGHUP, self._on_reload),
            )
        }
        context = multiprocessing.get_context("fork")
        try:
            main = self._load()
            self._workers = self._start_generation(context, main)
            self._write_announce()
            log.info("%s: %d workers serving port %d", self._name, self._count, self.port)
            while True:
                time.sleep(POLL_SECONDS)
                if self._reload_requested:
                    self._reload_requested = False
                    self._reload(context)
                if not self._replace_dead(context):
                    return 1
        except _Stop:
            return 0
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._stop_all(self._workers, signal.SIGTERM)
            self._reservation.close()
            shutil.rmtree(self._runtime, ignore_errors=True)

    # ---- signals -------------------------------------------------------------------------

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        raise _Stop()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self._reload_requested = True

    # ---- generations ---------------------------------------------------------------------

    def _start_generation(self, context: ForkContext, main: WorkerMain) -> list[_Worker]:
        self._generation += 1
        workers = [self._spawn(context, main, index) for index in range(self._count)]
        try:
            self._wait_serving(workers)
        except BaseException:
            self._stop_all(workers, signal.SIGKILL)
            raise
        return workers

    def _spawn(self, context: ForkContext, main: WorkerMain, index: int) -> _Worker:
        slot = WorkerSlot(index, self._count, self._metrics)
        announce = self._runtime / f"worker-{self._generation}-{index}.json"
        with contextlib.suppress(FileNotFoundError):
            announce.unlink()
        process = context.Process(
            target=_worker_entry,
            args=(main, slot, self.port, announce),
            name=f"{self._name}-worker-{index}",
        )
        process.start()
        return _Worker(slot, process, announce)

    def _wait_serving(self, workers: list[_Worker]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for worker in workers:
            while not worker.announce.exists():
                if not worker.process.is_alive():
                    raise RuntimeError(
                        f"worker {worker.slot.index} exited with status "
                        f"{worker.process.exitcode} before serving"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker {worker.slot.index} did not start in time")
                time.sleep(POLL_SECONDS / 2)

    def _reload(self, context: ForkContext) -> None:
        log.info("%s: reloading", self._name)
        try:
            main = self._load()
            fresh = self._start_generation(context, main)
        except Exception as exc:
            log.error("%s: reload failed, the running workers stay: %s", self._name, exc)
            return
        old, self._workers = self._workers, fresh
        self._write_announce()
        self._stop_all(old, signal.SIGUSR2)
        log.info("%s: reloaded (%d workers)", self._name, len(fresh))

    def _replace_dead(self, context: ForkContext) -> bool:
        """Restart workers that died; False when they die too often to go on."""
        for position, worker in enumerate(self._workers):
            if worker.process.is_alive():
                continue
            pid = worker.process.pid
            log.warning(
                "%s: worker %d (pid %s) exited with status %s",
                self._name,
                worker.slot.index,
                pid,
                worker.process.exitcode,
            )
            if pid is not None:
                remove_snapshot(self._metrics, pid)
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW] + [now]
            if len(self._restarts) > MAX_RESTARTS:
                log.error("%s: workers keep dying; stopping", self._name)
                return False
            try:
                replacement = self._spawn(context, self._load(), worker.slot.index)
                self._wait_serving([replacement])
            except Exception as exc:
                log.error("%s: could not replace worker %d: %s", self._name, position, exc)
                return False
            self._workers[position] = replacement
            self._write_announce()
        return True

    def _stop_all(self, workers: list[_Worker], signum: int) -> None:
        for worker in workers:
            if worker.process.is_alive() and worker.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signum)
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS + 5
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            if worker.process.pid is not None:
                remove_snapshot(self._metrics, worker.process.pid)

    def _write_announce(self) -> None:
        if self._announce is None:
            return
        host = f"[{self._host}]" if ":" in self._host else self._host
        write_announce(
            self._announce,
            {
                "kind": self._kind,
                "name": self._name,
                "url": f"http://{host}:{self.port}",
                "pid": os.getpid(),
                "workers": [w.process.pid for w in self._workers],
            },
        )


def _reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket holding the node's port number."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reservation = socket.socket(family, socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reservation.bind((host, port))
    return reservation


def _worker_entry(main: WorkerMain, slot: WorkerSlot, port: int, announce: Path) -> None:
    die_with_parent()
    # The supervisor's handlers came along with the fork: a worker stops on SIGTERM (its event
    # loop's handlers) and leaves SIGHUP, a reload of the whole node, to the supervisor.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    main(slot, port, announce)
