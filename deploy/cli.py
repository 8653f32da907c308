"""`shoal`: one command for every node kind and tool.

Every subcommand reads the same TOML configuration (`--config`, or $SHOAL_CONFIG), applies
`--set section.key=value` overrides in order, and validates the result before doing anything:
an unknown key, a wrong type or a bad value exits with status 2 and names the key.
"""

import argparse
import logging
import os
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvloop

from core.config import (
    CacheNodeConfig,
    ConfigError,
    ShoalConfig,
    dump_config,
    load_config,
    nest_override,
)
from core.config import parse_override as split_override
from deploy.upload import add_upload_arguments, run_upload
from origin.store.base import StoreError

if TYPE_CHECKING:
    from edge.app import WorkerSlot

EXIT_CONFIG_ERROR = 2


def default_data_dir() -> Path:
    """Where the embedded defaults keep their data: $XDG_DATA_HOME/shoal."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "shoal"


def default_store_root() -> Path:
    return default_data_dir() / "store"


def _override_value(raw: str) -> object:
    """A TOML value (`8080`, `true`, `["http://a"]`), or the raw text as a bare string."""
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def resolve_config(
    config_path: Path | None,
    overrides: Sequence[str],
    flags: Mapping[str, Any] | None = None,
) -> ShoalConfig:
    """The validated configuration: defaults, then the file, each override, then `flags`."""
    data: dict[str, object] = {}
    if config_path is not None:
        try:
            data = tomllib.loads(config_path.read_text())
        except OSError as exc:
            raise ConfigError("", f"cannot read config file {config_path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"config file {config_path} is not valid TOML: {exc}") from exc
    config = load_config(data)
    for assignment in overrides:
        path, raw = split_override(assignment)
        config = load_config(nest_override(path, _override_value(raw)), base=config)
    if flags:
        config = load_config(flags, base=config)
    return config


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    env_config = os.environ.get("SHOAL_CONFIG")
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(env_config) if env_config else None,
        metavar="FILE",
        help="TOML configuration file (default: $SHOAL_CONFIG, else built-in defaults)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set edge.port=9000 (repeatable)",
    )


def _add_node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (overrides the config)")
    parser.add_argument("--port", type=int, help="port to listen on; 0 picks a free one")
    parser.add_argument("--name", help="node name used in logs and Via headers")
    parser.add_argument(
        "--announce",
        type=Path,
        metavar="FILE",
        help="once listening, write {kind, name, url, pid} as JSON to FILE",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal",
        description="Shoal: short-video delivery over P2P, edge caches and origin.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run the local stack: origin, regional and edge nodes on free ports",
        description="Start an origin, regional node(s) and edge nodes on free local ports, "
        "make sure sample videos exist, print playable URLs, and stop everything on "
        "Ctrl-C or SIGTERM.",
    )
    _add_config_options(up)
    up.add_argument(
        "--status-file",
        type=Path,
        metavar="FILE",
        help="once the stack is up, write its nodes and playable URLs as JSON to FILE",
    )

    origin = commands.add_parser(
        "origin",
        help="run an origin node serving HLS packages from the content store",
        description="Serve the content store's HLS packages under /v/<video>/... "
        "with caching headers, ranges and conditional requests; take creators' uploads "
        "(tus at /files/), transcode them and answer the video API (/api/...).",
    )
    _add_config_options(origin)
    _add_node_options(origin)

    worker = commands.add_parser(
        "worker",
        help="run transcode workers that take jobs from the shared queue",
        description="Claim transcode jobs from uploads.queue_url (Redis Streams) and turn "
        "uploaded sources into HLS packages, beside the origin's own workers. Needs the "
        "origin's catalog and content store.",
    )
    _add_config_options(worker)
    worker.add_argument("--count", type=int, help="workers in this process (default 1)")
    worker.add_argument("--name", help="consumer name in the queue (default worker-<pid>)")

    upload = commands.add_parser(
        "upload",
        help="upload a video (resumable), wait until it is ready, print its playback URL",
        description="Upload FILE to the origin with the tus protocol, showing progress. If "
        "interrupted, running the same command again resumes where it stopped. Then wait "
        "for transcoding and print the playback URL.",
    )
    _add_config_options(upload)
    add_upload_arguments(upload)

    edge = commands.add_parser(
        "edge",
        help="run an edge or regional cache node",
        description="Run a cache node in front of the next tier: an edge (settings from "
        "[edge]) or, with --tier regional, a regional shield (settings from [regional]).",
    )
    _add_config_options(edge)
    _add_node_options(edge)
    edge.add_argument(
        "--tier",
        choices=("edge", "regional"),
        default="edge",
        help="run as an edge (default) or as a regional shield",
    )
    edge.add_argument(
        "--upstream",
        dest="upstreams",
        action="append",
        metavar="URL",
        help="base URL of the next tier (repeatable; overrides the config)",
    )
    edge.add_argument("--origin", help="base URL to fall back to when every upstream fails")

    tracker = commands.add_parser(
        "tracker",
        help="run the P2P tracker (WebTorrent protocol, for p2p-media-loader players)",
        description="Run a WebSocket tracker on / and /announce that introduces viewers of the "
        "same rendition to each other (settings from [tracker]); /stats.json, /metrics and "
        "/healthz beside it.",
    )
    _add_config_options(tracker)
    _add_node_options(tracker)

    samples = commands.add_parser(
        "samples",
        help="make sure the sample videos exist in the content store",
        description="Generate sample videos with ffmpeg (once) and publish them as HLS.",
    )
    _add_config_options(samples)
    samples.add_argument("--count", type=int, help="how many (default: up.samples)")

    sign = commands.add_parser(
        "sign",
        help="print a signed URL for a video path (the first of origin.signing_keys signs)",
        description="Sign a path for players when nodes require signed URLs: the token covers "
        "the video's directory (/v/<video>/), so every playlist and segment under it works.",
    )
    _add_config_options(sign)
    sign.add_argument("path", help="e.g. /v/sample-testsrc/master.m3u8")
    sign.add_argument("--ttl", type=int, help="seconds valid (default: origin.signed_url_ttl)")
    sign.add_argument("--base", default="", help="URL to prefix, e.g. http://127.0.0.1:8080")

    config = commands.add_parser(
        "config",
        help="print the effective configuration as TOML",
        description="Validate the configuration and print it, with every key and its default "
        "when given no file. Exit status 2 if it is invalid.",
    )
    _add_config_options(config)
    return parser


def _node_flags(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The node's command-line flags as a config layer over `section` (they win over --set)."""
    flags = {
        "host": args.host,
        "port": args.port,
        "upstreams": getattr(args, "upstreams", None),
        "origin": getattr(args, "origin", None),
    }
    return {section: {key: value for key, value in flags.items() if value is not None}}


def _setup_logging(config: ShoalConfig) -> None:
    logging.basicConfig(
        level=config.log.level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run_origin(args: argparse.Namespace) -> int:
    from deploy.serve import serve
    from origin.app import make_origin_app
    from origin.store import open_store
    from origin.uploads import install_uploads

    config = resolve_config(args.config, args.overrides, _node_flags(args, "origin"))
    _setup_logging(config)
    store = open_store(config.store, default_store_root())
    try:
        app = make_origin_app(store, config.origin)
        install_uploads(app, store, config.uploads, default_data_dir(), config.events)
        uvloop.run(
            serve(
                app,
                host=config.origin.host,
                port=config.origin.port,
                kind="origin",
                name=args.name or "origin",
                announce=args.announce,
            )
        )
    finally:
        store.close()
    return 0


def _run_edge(args: argparse.Namespace) -> int:
    from deploy.workers import Supervisor, WorkerMain, worker_count

    def node_config() -> CacheNodeConfig:
        config = resolve_config(args.config, args.overrides, _node_flags(args, args.tier))
        node: CacheNodeConfig = getattr(config, args.tier)
        return node

    config = resolve_config(args.config, args.overrides, _node_flags(args, args.tier))
    _setup_logging(config)
    node = node_config()
    name = args.name or args.tier
    count = worker_count(node.workers)
    if count == 1:
        _serve_cache_node(node, args.tier, name, announce=args.announce, port=node.port)
        return 0

    def load() -> WorkerMain:
        # Read again on every (re)load: SIGHUP applies an edited configuration file.
        fresh = node_config()

        def main(slot: "WorkerSlot", port: int, announce: Path) -> None:
            _serve_cache_node(fresh, args.tier, name, announce=announce, port=port, worker=slot)

        return main

    supervisor = Supervisor(
        load, count, host=node.host, port=node.port, kind=args.tier, name=name,
        announce=args.announce,
    )  # fmt: skip
    return supervisor.run()


def _serve_cache_node(
    node: CacheNodeConfig,
    tier: str,
    name: str,
    *,
    announce: Path | None,
    port: int,
    worker: "WorkerSlot | None" = None,
) -> None:
    from deploy.serve import serve
    from edge.app import RUNNER, make_cache_app

    app = make_cache_app(node, tier=tier, name=name, worker=worker)
    start_h3 = None
    # One QUIC listener per node: UDP has no accept to share out, so the first worker has it.
    if node.http3 and (worker is None or worker.index == 0):
        from edge.h3 import enable_http3

        start_h3 = enable_http3(app, node)

    def hand_over() -> None:
        app[RUNNER].flush_on_close = False

    uvloop.run(
        serve(
            app,
            host=node.host,
            port=port,
            kind=tier,
            name=name,
            announce=announce,
            after_bind=start_h3,
            reuse_port=worker is not None,
            on_handover=hand_over if worker is not None else None,
        )
    )


def _run_tracker(args: argparse.Namespace) -> int:
    import maxminddb

    from deploy.serve import serve
    from tracker.app import make_tracker_app

    config = resolve_config(args.config, args.overrides, _node_flags(args, "tracker"))
    _setup_logging(config)
    try:
        app = make_tracker_app(config.tracker)
    except (OSError, maxminddb.InvalidDatabaseError) as exc:
        raise ConfigError("tracker.geoip_db", f"cannot open the MaxMind DB: {exc}") from exc
    except ValueError as exc:
        raise ConfigError("tracker.trusted_proxies", f"expected CIDR networks: {exc}") from exc
    uvloop.run(
        serve(
            app,
            host=config.tracker.host,
            port=config.tracker.port,
            kind="tracker",
            name=args.name or "tracker",
            announce=args.announce,
        )
    )
    return 0


def _run_worker(args: argparse.Namespace) -> int:
    from origin.store import open_store
    from origin.uploads import open_pipeline, run_workers

    config = resolve_config(args.config, args.overrides)
    _setup_logging(config)
    if not config.uploads.queue_url:
        raise ConfigError("uploads.queue_url", "separate workers need a shared queue (redis://...)")
    count = 1 if args.count is None else args.count
    if count < 1:
        raise ConfigError("--count", "expected at least 1 worker")
    name = args.name or f"worker-{os.getpid()}"
    store = open_store(config.store, default_store_root())
    pipeline = open_pipeline(store, config.uploads, default_data_dir())

    async def work() -> None:
        from deploy.serve import wait_for_stop_signal

        async for _ in run_workers(pipeline, count, name):
            logging.getLogger("shoal.worker").info("%s: %d workers running", name, count)
            await wait_for_stop_signal(handover=False)
        await pipeline.queue.close()

    try:
        uvloop.run(work())
    finally:
        pipeline.catalog.close()
        store.close()
    return 0


def _run_upload(args: argparse.Namespace) -> int:
    config = resolve_config(args.config, args.overrides)
    host = config.origin.host
    origin = f"http://{f'[{host}]' if ':' in host else host}:{config.origin.port}"
    tokens = config.uploads.tokens
    token = os.environ.get("SHOAL_TOKEN") or (tokens[0].partition(":")[2] if tokens else "")
    status: int = run_upload(args, default_origin=origin, default_token=token)
    return status


def _run_samples(args: argparse.Namespace) -> int:
    from origin.samples import ensure_samples
    from origin.store import open_store

    config = resolve_config(args.config, args.overrides)
    _setup_logging(config)
    count = config.up.samples if args.count is None else args.count
    store = open_store(config.store, default_store_root())
    try:
        for video_id in ensure_samples(store, count, progress=print):
            print(f"/v/{video_id}/master.m3u8")
    finally:
        store.close()
    return 0


def _run_up(args: argparse.Namespace) -> int:
    from deploy.local import run_stack

    config = resolve_config(args.config, args.overrides)
    _setup_logging(config)
    return run_stack(config, store_root=default_store_root(), status_file=args.status_file)


def _run_sign(args: argparse.Namespace) -> int:
    from core.http.signing import SigningError, query_string, sign

    config = resolve_config(args.config, args.overrides)
    if not config.origin.signing_keys:
        raise ConfigError("origin.signing_keys", "expected at least one key to sign with")
    parts = args.path.split("/")
    if len(parts) < 4 or parts[1] != "v" or not parts[2]:
        print(
            f"shoal: expected a path like /v/<video>/master.m3u8, got {args.path!r}",
            file=sys.stderr,
        )
        return EXIT_CONFIG_ERROR
    ttl = config.origin.signed_url_ttl if args.ttl is None else args.ttl
    try:
        token = sign(f"/v/{parts[2]}/", int(time.time()) + ttl, config.origin.signing_keys[0])
    except SigningError as exc:
        print(f"shoal: cannot sign {args.path!r}: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    print(f"{args.base.rstrip('/')}{args.path}?{query_string(token)}")
    return 0


def _run_config(args: argparse.Namespace) -> int:
    config = resolve_config(args.config, args.overrides)
    print(dump_config(config, with_help=True), end="")
    return 0


_COMMANDS = {
    "up": _run_up,
    "origin": _run_origin,
    "edge": _run_edge,
    "tracker": _run_tracker,
    "worker": _run_worker,
    "upload": _run_upload,
    "samples": _run_samples,
    "sign": _run_sign,
    "config": _run_config,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"shoal: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except StoreError as exc:
        print(f"shoal: content store unavailable: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
