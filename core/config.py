"""Shoal's configuration: one TOML format for every node kind, validated before anything starts.

A file may describe a whole deployment: each node reads the shared sections (`[log]`, `[store]`)
and its own (`[origin]`, `[edge]`, `[regional]`), and `shoal up` reads them all. Every key has a
default, so an empty file (or none) is a working configuration. The schema is the dataclasses
below: a field's type is the type the TOML value must have, and its metadata holds the help text
and the allowed values. Validation is pure: the caller parses the TOML and passes the dict in.
"""

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024
GIB = 1024 * MIB


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what was expected."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key


def _opt(default: Any, help: str, **rules: Any) -> Any:
    """A scalar setting with its help text and validation rules (choices, min, max)."""
    return field(default=default, metadata={"help": help, **rules})


def _list_opt(default: list[str], help: str) -> Any:
    return field(default_factory=lambda: list(default), metadata={"help": help})


def _section(factory: Any, help: str) -> Any:
    return field(default_factory=factory, metadata={"help": help})


@dataclass(frozen=True)
class LogConfig:
    level: str = _opt("info", "log level", choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str = _opt("", "S3 endpoint URL; empty means AWS's default endpoint")
    bucket: str = _opt("shoal", "bucket holding the content")
    region: str = _opt("us-east-1", "S3 region name")
    prefix: str = _opt("", "key prefix inside the bucket, e.g. 'prod/' (empty for none)")
    access_key_id: str = _opt("", "access key; empty means boto3's credential chain")
    secret_access_key: str = _opt("", "secret key; empty means boto3's credential chain")
    create_bucket: bool = _opt(False, "create the bucket at start if it does not exist")


@dataclass(frozen=True)
class StoreConfig:
    backend: str = _opt("fs", "content store backend", choices=("fs", "s3"))
    path: str = _opt("", "filesystem store root; empty means $XDG_DATA_HOME/shoal/store")
    s3: S3Config = _section(S3Config, "S3 backend settings (used when backend = 's3')")


@dataclass(frozen=True)
class OriginConfig:
    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(8000, "TCP port to listen on (0 picks a free one)", min=0, max=65535)
    playlist_max_age: int = _opt(2, "Cache-Control max-age of playlists, seconds", min=0)
    segment_max_age: int = _opt(
        31_536_000, "Cache-Control max-age of init and media segments, seconds", min=0
    )
    signing_keys: list[str] = _list_opt(
        [], "secrets for signed URLs; the first signs the URIs in served playlists (empty: off)"
    )
    signed_url_ttl: int = _opt(3600, "seconds a signed URL in a served playlist stays valid", min=1)


@dataclass(frozen=True)
class UploadsConfig:
    """Creators' uploads into the origin: tus, the catalog, the transcode queue, moderation."""

    staging_path: str = _opt("", "directory of uploads in progress (empty: <data dir>/uploads)")
    catalog_path: str = _opt(
        "", "SQLite file of the metadata catalog (empty: <data dir>/catalog.sqlite)"
    )
    max_bytes: int = _opt(GIB, "largest upload accepted, bytes (413 past it)", min=1)
    expiration: float = _opt(
        86_400.0, "seconds an unfinished upload is kept before it expires", min=1.0
    )
    tokens: list[str] = _list_opt(
        ["demo:demo-token"],
        "bearer tokens of creators as 'user:token' (the default is a demo token: replace it)",
    )
    admin_token: str = _opt("", "bearer token of the moderation API (empty: disabled)")
    queue_url: str = _opt(
        "", "job queue: empty for in-process, or redis://host:port/db for Redis Streams"
    )
    workers: int = _opt(
        1, "transcode workers the origin runs itself (0: none; run `shoal worker`)", min=0, max=64
    )
    reclaim_after: float = _opt(
        600.0, "seconds before a job held by a silent worker is given to another", min=0.1
    )
    work_path: str = _opt("", "directory for transcodes in progress (empty: the system's temp)")
    max_duration: float = _opt(600.0, "longest video accepted, seconds", min=1.0)
    blocked_words: list[str] = _list_opt([], "words that hold a video for moderation")
    blocked_hashes: list[str] = _list_opt(
        [], "SHA-256 of sources that are held for moderation on upload"
    )


@dataclass(frozen=True)
class EventsConfig:
    """Viewer events at the origin: the batch API, its durable log, and the viral loop."""

    log_path: str = _opt(
        "", "append-only JSON-lines event log (empty: <data dir>/events/events.jsonl)"
    )
    redis_url: str = _opt(
        "", "redis://host:port/db: append to Redis Streams instead of the local log (empty: local)"
    )
    redis_prefix: str = _opt("events:", "prefix of the stream keys, <prefix><partition>")
    partitions: int = _opt(16, "Redis streams events are partitioned over, by user", min=1)
    stream_max_len: int = _opt(
        1_000_000, "approximate length each stream is trimmed to (0: never trimmed)", min=0
    )
    max_batch: int = _opt(500, "events one POST /api/events may carry", min=1, max=10_000)
    max_body_bytes: int = _opt(256 * 1024, "largest batch body, bytes (413 past it)", min=1024)
    buffer_events: int = _opt(
        100_000, "events acknowledged but not yet logged; past it batches get 503", min=1
    )
    hint_nodes: list[str] = _list_opt(
        [], "base URLs of cache nodes told about trending videos (POST /_shoal/trending)"
    )
    hint_token: str = _opt("", "bearer token of the cache nodes' trending-hints API")
    hint_attempts: int = _opt(5, "tries of one hint to one node before giving up", min=1)
    hint_backoff: float = _opt(
        0.2, "seconds before a hint's second try; doubled after each failure", min=0.001
    )
    short_window: float = _opt(
        10.0, "trending: seconds of the short (current rate) window's mean lifetime", min=0.1
    )
    long_window: float = _opt(
        1800.0, "trending: seconds of the long (baseline) window's mean lifetime", min=1.0
    )
    prior_rate: float = _opt(
        0.05, "trending: views/s of a typical new video (the baseline of a young one)", min=0.0
    )
    min_views: float = _opt(20.0, "trending: views in the short window needed to trend", min=1.0)
    z_enter: float = _opt(4.0, "trending: z-score of the short window over the baseline", min=0.0)
    ratio: float = _opt(
        3.0, "trending: short-window views over their baseline expectation", min=1.0
    )


@dataclass(frozen=True)
class CacheNodeConfig:
    """An edge or regional node; both tiers run the same code with different settings."""

    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(8080, "TCP port to listen on (0 picks a free one)", min=0, max=65535)
    upstreams: list[str] = _list_opt(
        ["http://127.0.0.1:8000"],
        "base URLs of the next tier; each key goes to one of them by rendezvous hashing",
    )
    origin: str = _opt("", "base URL tried when every upstream failed (empty: none)")
    connect_timeout: float = _opt(2.0, "seconds to open a connection upstream", min=0.001)
    upstream_timeout: float = _opt(
        15.0, "seconds an upstream may take to answer a request", min=0.001
    )
    memory_bytes: int = _opt(256 * MIB, "bytes of the memory tier", min=0)
    disk_path: str = _opt("", "directory of the disk tier (empty: memory only)")
    disk_bytes: int = _opt(0, "bytes of the disk tier below memory (0: no disk tier)", min=0)
    disk_promote_hits: int = _opt(
        2,
        "disk hits that bring an object back to memory; the earlier ones are sent from disk",
        min=1,
    )
    eviction: str = _opt(
        "s3fifo", "eviction policy", choices=("lru", "s3fifo", "sieve", "wtinylfu", "gdsf")
    )
    admission: str = _opt("viral", "admission policy", choices=("always", "second-hit", "viral"))
    hot_rate: float = _opt(
        0.0,
        "viral admission: requests/s above which a video is hot (0: the tier's adaptive "
        "default, about the top 1% of videos at an edge, 10% at a regional node)",
        min=0.0,
    )
    half_life: float = _opt(
        60.0, "viral admission: seconds for a video's request rate to halve", min=0.001
    )
    negative_ttl: float = _opt(10.0, "seconds a 404 without explicit freshness is cached", min=0)
    uncacheable_ttl: float = _opt(
        30.0, "seconds a key whose response was not shareable bypasses coalescing", min=0
    )
    purge_token: str = _opt("", "bearer token of the purge API (empty: purging is disabled)")
    hint_token: str = _opt("", "bearer token of the trending-hints API (empty: hints are disabled)")
    signing_keys: list[str] = _list_opt(
        [],
        "secrets verifying signed URLs (HMAC-SHA256); two during a rotation (empty: none)",
    )
    require_signed: bool = _opt(False, "refuse (403) media requests without a valid signed URL")
    workers: int = _opt(
        1,
        "processes serving the node's port together (SO_REUSEPORT), splitting memory_bytes "
        "and disk_bytes; 0: one per CPU",
        min=0,
        max=256,
    )
    max_connections: int = _opt(10_000, "client connections served at once (per worker)", min=1)
    rate_limit: float = _opt(0.0, "requests/s each client address may make (0: unlimited)", min=0.0)
    rate_burst: int = _opt(200, "requests a client may make at once above its rate", min=1)
    client_timeout: float = _opt(
        15.0, "seconds a client may take to send a request's head (slowloris guard)", min=0.1
    )
    keepalive_timeout: float = _opt(75.0, "seconds an idle client connection stays open", min=0)
    max_header_bytes: int = _opt(
        8190, "longest request line and header field accepted", min=256, max=65536
    )
    http3: bool = _opt(False, "also serve HTTP/3 (QUIC) on the same port number over UDP")
    tls_certificate: str = _opt(
        "", "PEM certificate for HTTP/3 (empty: a self-signed one, for development)"
    )
    tls_private_key: str = _opt("", "PEM private key of tls_certificate")
    upstream_total_timeout: float = _opt(
        60.0, "seconds a whole upstream response may take, body included", min=0.001
    )


def _regional_defaults() -> CacheNodeConfig:
    return CacheNodeConfig(port=8090, memory_bytes=GIB)


def _edge_defaults() -> CacheNodeConfig:
    return CacheNodeConfig(port=8080, upstreams=["http://127.0.0.1:8090"])


@dataclass(frozen=True)
class TrackerConfig:
    """The P2P tracker: the WebTorrent protocol of p2p-media-loader 2.3, with Shoal's limits."""

    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(8100, "TCP port to listen on (0 picks a free one)", min=0, max=65535)
    announce_interval: int = _opt(
        120, "seconds between a peer's announces; silent for twice this, it is dropped", min=1
    )
    max_swarm_peers: int = _opt(
        1000, "peers in one swarm; a new peer past it gets 'swarm full'", min=1
    )
    max_swarms_per_connection: int = _opt(
        32, "swarms (renditions) one WebSocket connection may join at once", min=1
    )
    ip_rate: float = _opt(
        20.0, "messages/s (announces, answers) each client address may send (0: unlimited)", min=0.0
    )
    ip_burst: int = _opt(100, "messages a client address may send at once above ip_rate", min=1)
    swarm_rate: float = _opt(
        500.0, "messages/s one swarm accepts from all its peers together (0: unlimited)", min=0.0
    )
    swarm_burst: int = _opt(1000, "messages a swarm accepts at once above swarm_rate", min=1)
    max_message_bytes: int = _opt(
        65_536, "longest WebSocket message answered with a failure; 4 times this closes", min=1024
    )
    max_connections: int = _opt(10_000, "WebSocket connections served at once", min=1)
    heartbeat: float = _opt(
        30.0, "seconds between WebSocket pings; a connection silent to one is closed", min=0.1
    )
    trusted_proxies: list[str] = _list_opt(
        [], "networks (CIDR) whose X-Forwarded-For names the client address"
    )
    geoip_db: str = _opt(
        "", "MaxMind DB giving each client address its pop, ASN, country, region (empty: none)"
    )
    pop_from_query: bool = _opt(
        True, "use the WebSocket URL's ?pop= when the MaxMind DB names no PoP for the address"
    )
    allow_list: bool = _opt(False, "accept only info_hashes the origin has registered")
    origin_url: str = _opt("http://127.0.0.1:8000", "origin asked about info_hashes (allow_list)")
    allow_ttl: float = _opt(3600.0, "seconds a registered info_hash is remembered", min=0.0)
    deny_ttl: float = _opt(10.0, "seconds an unregistered info_hash is remembered", min=0.0)
    allow_timeout: float = _opt(
        2.0, "seconds an announce waits for the origin's answer about its info_hash", min=0.01
    )
    redis_url: str = _opt(
        "", "redis://host:port/db shared by tracker processes behind one name (empty: alone)"
    )
    redis_prefix: str = _opt("shoal:tracker:", "prefix of the tracker's Redis keys and channels")


@dataclass(frozen=True)
class UpConfig:
    edges: int = _opt(2, "edge nodes `shoal up` starts", min=1, max=16)
    regionals: int = _opt(1, "regional nodes `shoal up` starts", min=1, max=8)
    samples: int = _opt(3, "sample videos `shoal up` makes sure exist", min=0, max=8)
    start_timeout: float = _opt(30.0, "seconds each node may take to become healthy", min=1.0)


@dataclass(frozen=True)
class ShoalConfig:
    log: LogConfig = _section(LogConfig, "logging")
    store: StoreConfig = _section(StoreConfig, "content store (origin)")
    origin: OriginConfig = _section(OriginConfig, "origin node")
    uploads: UploadsConfig = _section(UploadsConfig, "uploads and transcoding (origin)")
    events: EventsConfig = _section(EventsConfig, "viewer events and the viral loop (origin)")
    regional: CacheNodeConfig = _section(_regional_defaults, "regional (shield) cache nodes")
    edge: CacheNodeConfig = _section(_edge_defaults, "edge cache nodes")
    tracker: TrackerConfig = _section(TrackerConfig, "P2P tracker")
    up: UpConfig = _section(UpConfig, "the local stack started by `shoal up`")


_TYPE_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list[str]: "list of strings",
}


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def _coerce(key: str, expected: Any, value: object) -> object:
    """Check `value` against the field type; ints are accepted where numbers are expected."""
    ok: bool
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(typing.cast(float, value))
    elif expected is str:
        ok = isinstance(value, str)
    elif expected == list[str]:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        if ok:
            value = list(typing.cast(list[str], value))
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported config type {expected!r} for {key}")
    if not ok:
        raise ConfigError(key, f"expected {_TYPE_NAMES[expected]}, got {_describe(value)}")
    return value


def _check_rules(key: str, value: object, metadata: Mapping[str, Any]) -> None:
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(repr(choice) for choice in choices)
        raise ConfigError(key, f"expected one of {allowed}, got {value!r}")
    if isinstance(value, int | float):
        low, high = metadata.get("min"), metadata.get("max")
        if low is not None and value < low:
            raise ConfigError(key, f"expected a value >= {low}, got {value}")
        if high is not None and value > high:
            raise ConfigError(key, f"expected a value <= {high}, got {value}")


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _build(cls: type[Any], data: Mapping[str, Any], path: str, base: Any) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in data:
        if name not in fields:
            where = f"[{path}]" if path else "the top level"
            known = ", ".join(sorted(fields))
            raise ConfigError(_join(path, name), f"unknown key in {where} (known keys: {known})")
    changes: dict[str, Any] = {}
    for name, value in data.items():
        key = _join(path, name)
        expected = hints[name]
        if _is_section(expected):
            if not isinstance(value, dict):
                raise ConfigError(key, f"expected a table [{key}], got {_describe(value)}")
            changes[name] = _build(expected, value, key, getattr(base, name))
        else:
            coerced = _coerce(key, expected, value)
            _check_rules(key, coerced, fields[name].metadata)
            changes[name] = coerced
    return dataclasses.replace(base, **changes)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def load_config(data: Mapping[str, Any], base: ShoalConfig | None = None) -> ShoalConfig:
    """Validate a parsed TOML document over `base` (the defaults when omitted).

    Raises `ConfigError` naming the first unknown key, wrong type or out-of-range value.
    """
    config: ShoalConfig = _build(ShoalConfig, data, "", base or ShoalConfig())
    for section in ("edge", "regional"):
        node: CacheNodeConfig = getattr(config, section)
        if node.disk_bytes and not node.disk_path:
            raise ConfigError(f"{section}.disk_path", "expected a directory when disk_bytes > 0")
        if not node.upstreams:
            raise ConfigError(f"{section}.upstreams", "expected at least one upstream URL")
        for url in node.upstreams:
            _check_url(f"{section}.upstreams", url)
        if len(set(node.upstreams)) != len(node.upstreams):
            raise ConfigError(f"{section}.upstreams", "expected distinct URLs, got duplicates")
        if node.origin:
            _check_url(f"{section}.origin", node.origin)
        _check_signing_keys(f"{section}.signing_keys", node.signing_keys)
        if node.require_signed and not node.signing_keys:
            raise ConfigError(f"{section}.require_signed", "needs at least one signing key")
    _check_signing_keys("origin.signing_keys", config.origin.signing_keys)
    for url in config.events.hint_nodes:
        _check_url("events.hint_nodes", url)
    if config.events.hint_nodes and not config.events.hint_token:
        raise ConfigError("events.hint_token", "needs a token when events.hint_nodes is set")
    return config


def _check_signing_keys(key: str, keys: list[str]) -> None:
    if any(not secret for secret in keys):
        raise ConfigError(key, "expected non-empty secrets")


def _check_url(key: str, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(key, f"expected http:// or https:// URLs, got {url!r}")


def parse_override(assignment: str) -> tuple[list[str], str]:
    """Split a `section.key=value` override into its dotted path and its raw TOML value."""
    name, sep, raw = assignment.partition("=")
    path = name.strip().split(".")
    if not sep or not all(path):
        raise ConfigError(name.strip(), "expected an override of the form section.key=value")
    return path, raw.strip()


def nest_override(path: list[str], value: object) -> dict[str, Any]:
    """Turn `["edge", "port"], 9000` into `{"edge": {"port": 9000}}`, ready for `load_config`."""
    nested: dict[str, Any] = {path[-1]: value}
    for name in reversed(path[:-1]):
        nested = {name: nested}
    return nested


def _toml_string(text: str) -> str:
    # TOML basic strings: escape quote, backslash and control characters (TOML 1.0, "String").
    escaped = []
    for char in text:
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def dump_config(config: ShoalConfig, *, with_help: bool = False) -> str:
    """Render `config` as TOML that `load_config` reads back to an equal value."""
    lines: list[str] = []

    def walk(cls: type[Any], instance: Any, path: str) -> None:
        hints = typing.get_type_hints(cls)
        scalars = [f for f in dataclasses.fields(cls) if not _is_section(hints[f.name])]
        if path and scalars:
            lines.append(f"\n[{path}]")
        for f in scalars:
            if with_help:
                lines.append(f"# {f.metadata['help']}")
            lines.append(f"{f.name} = {_toml_value(getattr(instance, f.name))}")
        for f in dataclasses.fields(cls):
            if _is_section(hints[f.name]):
                walk(hints[f.name], getattr(instance, f.name), _join(path, f.name))

    walk(ShoalConfig, config, "")
    return "\n".join(lines).lstrip("\n") + "\n"


__all__ = [
    "CacheNodeConfig",
    "ConfigError",
    "EventsConfig",
    "LogConfig",
    "OriginConfig",
    "S3Config",
    "ShoalConfig",
    "StoreConfig",
    "TrackerConfig",
    "UpConfig",
    "dump_config",
    "load_config",
    "nest_override",
    "parse_override",
]
