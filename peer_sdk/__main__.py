"""Run one peer: ``python -m peer_sdk --edge URL --tracker URL [--play VIDEO] [--proxy PORT]``.

With ``--play`` it plays the video without a player (the paced reader of ``Peer.play``) and
prints one JSON line ``{"event": "played", ...}``; with ``--proxy`` it serves the local HTTP
proxy for a real player and prints ``{"event": "proxy", "url": ...}``. It then keeps seeding
for ``--linger`` seconds (or until SIGTERM/SIGINT) and prints ``{"event": "closed", ...}``
with its final counters. One JSON object per line, so a parent process can follow along.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import sys
from dataclasses import asdict
from typing import Any

from aiohttp import web

from core.p2p.scheduler import SchedulerConfig
from peer_sdk.peer import Peer
from peer_sdk.proxy import make_proxy_app


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m peer_sdk", description=__doc__)
    parser.add_argument("--edge", required=True, help="edge base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--tracker", default="", help="tracker WebSocket URL (empty: HTTP only)")
    parser.add_argument("--play", metavar="VIDEO", help="play this video without a player")
    parser.add_argument("--rendition", help="variant directory to play (default: the first)")
    parser.add_argument("--speed", type=float, default=1.0, help="playback speed (x real time)")
    parser.add_argument("--wait-peers", type=int, default=0, help="peers to wait for before play")
    parser.add_argument("--wait-timeout", type=float, default=10.0)
    parser.add_argument("--proxy", type=int, metavar="PORT", help="serve the player proxy")
    parser.add_argument("--proxy-host", default="127.0.0.1")
    parser.add_argument("--linger", type=float, default=0.0, help="seconds to keep seeding")
    parser.add_argument("--seed", type=int, help="seed of the peer's random generator")
    parser.add_argument("--high-demand-window", type=float, default=15.0)
    parser.add_argument("--p2p-window", type=float, default=60.0)
    parser.add_argument("--memory-mb", type=int, default=256)
    parser.add_argument("--upload-slots", type=int, default=4)
    parser.add_argument("--upload-rate", type=float, help="upload bytes/s (default: unlimited)")
    return parser


async def _main(args: argparse.Namespace) -> int:
    config = SchedulerConfig(
        high_demand_window=args.high_demand_window,
        p2p_window=args.p2p_window,
        memory_bytes=args.memory_mb << 20,
        upload_slots=args.upload_slots,
        upload_rate=args.upload_rate,
    )
    rng = random.Random(args.seed)
    peer = Peer(args.edge, args.tracker or None, config=config, rng=rng)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await peer.start()
    runner: web.AppRunner | None = None
    try:
        if args.proxy is not None:
            runner = web.AppRunner(make_proxy_app(peer))
            await runner.setup()
            site = web.TCPSite(runner, args.proxy_host, args.proxy)
            await site.start()
            _emit("proxy", url=site.name, peer_id=peer.peer_id)
        if args.play:
            await peer.open(args.play, args.rendition)
            if args.wait_peers:
                await peer.wait_for_peers(args.wait_peers, args.wait_timeout)
            result = await peer.play(args.play, args.rendition, speed=args.speed)
            _emit("played", peer_id=peer.peer_id, result=asdict(result), stats=peer.stats())
        if args.linger:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.linger)
    finally:
        _emit("closed", stats=peer.stats())
        if runner is not None:
            await runner.cleanup()
        await peer.close()
    return 0


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(relativeCreated)7.0fms %(name)s %(message)s",
    )
    for noisy in ("aioice", "aiortc"):  # a line per ICE check pair
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sys.exit(asyncio.run(_main(_parser().parse_args())))


if __name__ == "__main__":
    main()
