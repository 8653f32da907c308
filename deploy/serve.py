"""Running one node: bind, announce where it listens, serve until SIGTERM/SIGINT, drain.

Every node kind (origin, edge, regional) runs through `serve`, so they all start, report and
stop the same way. `shoal up` relies on the announce file: a node started with port 0 writes
its real URL there once it is bound, so the parent never guesses a port.
"""

import asyncio
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from edge.limits import drain, listen, server_options

log = logging.getLogger(__name__)

# In-flight responses get this long to finish after a stop signal.
SHUTDOWN_GRACE_SECONDS = 5.0


def write_announce(path: Path, record: dict[str, object]) -> None:
    """Write `record` as JSON atomically: a reader sees nothing or the whole file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record))
    temporary.replace(path)


AfterBind = Callable[[str, int], Awaitable[Callable[[], None]]]
"""Starts something beside the TCP listener once its port is known; returns how to stop it."""


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    kind: str,
    name: str,
    announce: Path | None,
    after_bind: AfterBind | None = None,
    reuse_port: bool = False,
    on_handover: Callable[[], None] | None = None,
) -> None:
    """Serve `app` until SIGTERM or SIGINT, then let open responses finish and stop.

    `reuse_port`: bind with SO_REUSEPORT, beside the other workers of the node. `on_handover`:
    also stop on SIGUSR2, calling this first (a worker replaced by a new generation)."""
    # A cache node's client limits (edge.limits) configure aiohttp's request handler here and
    # guard every connection in `listen`; an app without limits (the origin) is served as is.
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS, **server_options(app)
    )
    await runner.setup()
    listener: asyncio.Server | None = None
    stop_beside: Callable[[], None] | None = None
    try:
        listener = await listen(runner, host, port, reuse_port=reuse_port)
        bound_host, bound_port = listener.sockets[0].getsockname()[:2]
        if after_bind is not None:
            stop_beside = await after_bind(bound_host, bound_port)
        url = f"http://{_url_host(bound_host)}:{bound_port}"
        log.info("%s (%s) listening on %s", name, kind, url)
        if announce is not None:
            write_announce(announce, {"kind": kind, "name": name, "url": url, "pid": os.getpid()})
        stopped_by = await wait_for_stop_signal(handover=on_handover is not None)
        if stopped_by == signal.SIGUSR2 and on_handover is not None:
            on_handover()
        log.info("%s: stopping (%s)", name, signal.Signals(stopped_by).name)
    finally:
        if stop_beside is not None:
            stop_beside()
        if listener is not None:
            listener.close()  # accept nothing more; what is open finishes its responses
        await drain(app, SHUTDOWN_GRACE_SECONDS)
        await runner.cleanup()
        if listener is not None:
            await listener.wait_closed()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def wait_for_stop_signal(*, handover: bool) -> int:
    """The number of the first stop signal received (SIGUSR2 too when `handover`)."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[int] = loop.create_future()
    signals = (signal.SIGTERM, signal.SIGINT, *((signal.SIGUSR2,) if handover else ()))

    def stop(signum: int) -> None:
        if not received.done():
            received.set_result(signum)

    for signum in signals:
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await received
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
