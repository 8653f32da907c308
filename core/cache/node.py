"""`CacheNode`: one edge or regional cache node's decisions, in Varnish's request phases.

    recv -> hash -> lookup -> hit | miss | pass -> backend response -> deliver

`handle(event)` returns the commands the shell must execute, in order. The node never touches a
byte of content: the shell streams bodies and keeps stored objects under the ids the node gives.

Request coalescing: at most one fetch per cache key is in flight. Requests that find a fetch in
flight wait on it (before its response arrives) or attach to its stream (after), so a viral burst
costs one upstream request. A response that turns out not to be shareable (private, no-store,
Vary: *) releases the waiters to fetch on their own, and the key is remembered as pass-only for
`uncacheable_ttl` (Varnish's hit-for-pass) so later requests do not queue behind it again. A
server error (5xx) is not stored either, but it goes to every waiter and leaves the key as it
was: it says the upstream is in trouble, not that the object cannot be shared.

Every request is answered exactly once: by a `Respond`, a `ServeStored`, or a `Delivery` inside
`StreamFetch`/`AttachToFetch` (a stream cut by `AbortFetch` counts: the client sees a truncated
response it can detect by its Content-Length).
"""

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum

from core.cache.admission import AdmissionPolicy
from core.cache.commands import (
    AbortFetch,
    AttachToFetch,
    Command,
    Delivery,
    Demote,
    DropStored,
    FetchUpstream,
    ProbeParent,
    Promote,
    ReleaseFetch,
    Respond,
    ServeStored,
    StoreFetched,
    StreamFetch,
)
from core.cache.events import (
    ClientGone,
    Event,
    FetchCompleted,
    Fields,
    ProbeCompleted,
    PurgeRequested,
    RequestReceived,
    ShuttingDown,
    StoredObjectFound,
    StoredObjectLost,
    TrendingHinted,
    UpstreamFailed,
    UpstreamResponded,
)
from core.cache.index import CacheIndex
from core.cache.objects import ObjectKind, ObjectRef, classify
from core.cache.routing import ParentRouter
from core.cache.status import CacheStatus
from core.http import caching
from core.http.conditional import (
    ConditionalHeaders,
    Evaluation,
    Precondition,
    Validators,
    evaluate_preconditions,
    parse_http_date,
)
from core.http.fields import end_to_end
from core.http.paths import UnsafePath, check_raw_path
from core.http.ranges import SatisfiableRange, UnsatisfiableRange, parse_range
from core.http.signing import Key, Verdict, check_prefix, query_string, sign, strip_token, verify
from manifests import ManifestError, MasterPlaylist, parse

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
REFUSED_METHODS = frozenset({"CONNECT", "TRACE"})

# The proxy names the upstream host itself.
_NOT_FORWARDED = frozenset({"host"})
# A fetch made to fill the cache asks for the whole object and carries the node's own validators:
# the client's range and conditionals are applied by the node when it delivers.
_CLIENT_ONLY_FIELDS = frozenset(
    {"range", "if-range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since"}
)
# Fields a delivery sets itself from the stored object's or the fetch's facts.
_DELIVERY_FIELDS = frozenset({"content-length", "content-range", "age", "cache-status"})
# Request fields that make a delivery evaluate preconditions (RFC 9110 sections 13.2.2, 13.1.5).
_PRECONDITION_FIELDS = (
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
)
# Request fields that can change how a stored response answers a GET or HEAD (request cache
# directives, Range, preconditions). A request with none of them is "plain": every plain request
# for a target gets the same kind of answer while the stored object stays fresh.
NOT_PLAIN_FIELDS = frozenset({"cache-control", "range", *_PRECONDITION_FIELDS})
"""Request fields that make a request not plain (`CacheNode.is_plain_request`)."""
_PLAIN_METHODS = frozenset({"GET", "HEAD"})
# What `evaluate_preconditions` says of a request with none of them, by whether it is a GET (a
# GET's Range is honoured, any other method's ignored).
_UNCONDITIONAL = {
    False: Evaluation(Precondition.PROCEED, honour_range=False),
    True: Evaluation(Precondition.PROCEED, honour_range=True),
}
# Uncacheable verdicts kept at most; a full table first sheds expired ones, then the oldest.
MAX_PASS_ONLY_KEYS = 100_000
# What a stored object costs beyond its body (the object table, its header fields): charged to
# the byte capacity so that tiny or empty objects cannot pile up without bound.
OBJECT_OVERHEAD_BYTES = 256
# 5xx answers from a parent that say the parent, not the object, is in trouble.
_PARENT_TROUBLE = frozenset({502, 503, 504})
# Requests under this path are media: with `require_signed`, they need a valid signed URL.
SIGNED_PATH_PREFIX = "/v/"
# Seconds the token a node puts on its own upstream fetches stays valid (clock skew between
# tiers included): only the next tier reads it, right when the request arrives.
UPSTREAM_TOKEN_TTL = 300


@dataclass(frozen=True)
class NodeSettings:
    name: str
    tier: str
    """"edge" or "regional"."""
    parents: tuple[str, ...]
    """Base URLs of the next tier, chosen per key by rendezvous hashing."""
    origin: str | None = None
    """Base URL tried after every parent failed (None: the parents are the last resort)."""
    negative_ttl: float = 10.0
    """Seconds a 404 without explicit freshness is cached."""
    uncacheable_ttl: float = 30.0
    """Seconds a key whose response was not shareable goes straight to the upstream."""
    signing_keys: tuple[Key, ...] = ()
    """Signed-URL keys (`core.http.signing`), two during a rotation; the first signs. With
    keys, the token parameters are no part of the cache key, and upstream fetches of media
    carry a token of the node's own (see `CacheNode._upstream_target`)."""
    require_signed: bool = False
    """Refuse (403) media requests (under `/v/`) without a valid signed URL; needs keys."""
    object_id_prefix: str = ""
    """Makes object ids unique across restarts of a node whose disk tier outlives it."""
    disk_promote_hits: int = 2
    """Disk hits (since its demotion) that bring an object back to memory; the hits before
    are served from disk. One-off hits on the long tail then evict nothing hot from memory."""

    def __post_init__(self) -> None:
        if self.require_signed and not self.signing_keys:
            raise ValueError("require_signed needs at least one signing key")
        if any(not key for key in self.signing_keys):
            raise ValueError("a signing key must not be empty")
        if self.disk_promote_hits < 1:
            raise ValueError("disk_promote_hits must be at least 1")


class _Mode(Enum):
    FILL = "fill"
    """Fetch a missing object for the waiting requests and maybe store it."""
    REVALIDATE = "revalidate"
    """Ask the upstream whether a stored, stale object is still good (conditional request)."""
    PASS = "pass"
    """One request's own fetch: never coalesced, never stored."""
    PREWARM = "prewarm"
    """A fetch the node makes for itself (trending hints); `want_body` for playlists."""


@dataclass(slots=True)
class _Waiter:
    request_id: int
    method: str
    headers: Fields
    secondary_key: tuple[str | None, ...] | None = None


@dataclass(frozen=True, slots=True)
class _Shared:
    """What every hit on one stored response has in common, derived once from its meta (and
    again when a revalidation replaces the meta): hits then skip re-parsing its fields."""

    meta: caching.StoredResponseMeta
    """The meta these facts were derived from."""
    lifetime: float
    """`caching.freshness_lifetime_of(meta)`."""
    initial_age: float
    """`caching.current_age_of(meta, meta.response_time)`: the age grows from it one second per
    second of residence (RFC 9111 section 4.2.3)."""
    headers: dict[str, str]
    """The end-to-end fields a delivery starts from (never handed out: deliveries copy it)."""
    plain_fields: dict[str, str] | None
    """For a 200 response: the fields of every plain hit on it but Age and Cache-Status (the
    delivered fields with this node's Via and the Content-Length); never handed out."""
    plain_status: str
    """A plain hit's Cache-Status value up to its ttl: upstream members, then this node's."""


@dataclass(slots=True)
class _Stored:
    object_id: str
    key: str
    ref: ObjectRef
    meta: caching.StoredResponseMeta
    size: int
    vary: tuple[str, ...]
    shared: _Shared | None = None
    """Derived from `meta` on the first hit; stale once `meta` is replaced."""
    on_disk: bool = False
    """In the disk tier only (not in memory)."""
    disk_hits: int = 0
    """Hits while on disk, since it went there (`NodeSettings.disk_promote_hits`)."""

    def shared_facts(self, node: str) -> _Shared:
        """The facts of `meta` every hit on this object served by `node` shares."""
        shared = self.shared
        if shared is None or shared.meta is not self.meta:
            meta = self.meta
            headers = _delivered_fields(meta)
            plain_fields = None
            if meta.status == 200:
                plain_fields = headers.copy()
                # Age and Cache-Status are filled in per hit, in `_delivery`'s order.
                plain_fields["age"] = plain_fields["cache-status"] = ""
                plain_fields["via"] = _append_via(meta.headers.get("via"), node)
                plain_fields["content-length"] = str(self.size)
            hit_status = str(CacheStatus.hit(node).with_ttl(0)).removesuffix("0")
            shared = self.shared = _Shared(
                meta,
                caching.freshness_lifetime_of(meta),
                caching.current_age_of(meta, meta.response_time),
                headers,
                plain_fields,
                _append_status(meta.headers, hit_status),
            )
        return shared


PlainHit = tuple[str, _Shared, str, int]
"""A plain hit (`CacheNode.plain_hit`): the object id, what every hit on it shares (equal
for as long as the delivered fields but Age and Cache-Status are), the Age value and the ttl
in whole seconds."""


@dataclass(slots=True)
class _Fetch:
    fetch_id: int
    key: str
    ref: ObjectRef
    mode: _Mode
    method: str
    target: str
    headers: Fields
    """The fields sent upstream."""
    candidates: list[str]
    started: float
    waiters: list[_Waiter] = field(default_factory=list)
    upstream: str = ""
    responded: bool = False
    shareable: bool = False
    store_as: str | None = None
    meta: caching.StoredResponseMeta | None = None
    size_hint: int | None = None
    stale: _Stored | None = None
    """The stored object being revalidated, or the one usable if this fetch fails."""
    forward_reason: str = "uri-miss"
    """RFC 9211 `fwd`: uri-miss, or vary-miss when other variants of the key are stored."""
    invalidates: bool = False
    """An unsafe request: a non-error response invalidates its target (RFC 9111 4.4)."""
    purged: bool = False
    """Its key was purged while it was in flight: it stores nothing, whenever it responds."""


@dataclass
class NodeStats:
    """Counters the shell exports as metrics and the simulator reports."""

    requests: dict[str, int] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    misses: dict[str, int] = field(default_factory=dict)
    passes: int = 0
    upstream_fetches: int = 0
    coalesced_waiters: int = 0
    admission_rejects: int = 0
    evictions: int = 0
    stale_served: int = 0
    upstream_failures: int = 0
    purged: int = 0
    demotions: int = 0
    promotions: int = 0

    @staticmethod
    def bump(counter: dict[str, int], kind: ObjectKind) -> None:
        counter[kind.value] = counter.get(kind.value, 0) + 1


class CacheNode:
    """The decisions of one cache node; see the module docstring."""

    def __init__(
        self,
        settings: NodeSettings,
        *,
        index: CacheIndex,
        admission: AdmissionPolicy,
        router: ParentRouter,
        disk_index: CacheIndex | None = None,
    ) -> None:
        """`index` is the memory tier; `disk_index`, when given, the warm tier below it:
        objects evicted from memory are demoted there, and a disk hit promotes them back."""
        self.settings = settings
        self.stats = NodeStats()
        self._index = index
        self._disk_index = disk_index
        self._admission = admission
        self._router = router
        self._variants: dict[str, list[_Stored]] = {}
        self._plain_hits: dict[str, _Stored] = {}
        """Target -> the fresh, unvaried, in-memory object a plain request for it was last
        answered from: the next plain request skips straight to the hit (`_plain_hit`)."""
        self._hit_status = CacheStatus.hit(settings.name)
        """Every hit's Cache-Status member but its ttl."""
        self._by_object: dict[str, _Stored] = {}
        self._fetches: dict[int, _Fetch] = {}
        self._fetch_for_key: dict[str, int] = {}
        self._pass_until: dict[str, float] = {}
        self._fetch_ids = itertools.count(1)
        self._object_ids = itertools.count(1)

    # ---- the shell's interface -------------------------------------------------------------

    def handle(self, event: Event) -> list[Command]:
        """Process one event; return the commands to execute, in order."""
        match event:
            case RequestReceived():
                served = self._plain_hit(event)
                return [served] if served is not None else list(self._recv(event))
            case UpstreamResponded():
                return list(self._backend_response(event))
            case UpstreamFailed():
                return list(self._upstream_failed(event))
            case FetchCompleted():
                return list(self._fetch_completed(event))
            case ClientGone():
                self._forget_waiter(event.request_id)
                return []
            case PurgeRequested():
                return list(self._purge(event))
            case TrendingHinted():
                return list(self._trending(event))
            case StoredObjectFound():
                return list(self._restore(event))
            case StoredObjectLost():
                self._forget_object(event.object_id)
                return []
            case ShuttingDown():
                return list(self._shut_down(event.now))
            case ProbeCompleted():
                if event.healthy:
                    self._router.report_success(event.parent, event.now)
                else:
                    self._router.report_failure(event.parent, event.now)
                return []

    def next_deadline(self) -> float | None:
        """When `on_timer` should next run (health probes of parents in back-off)."""
        return self._router.next_deadline()

    def on_timer(self, now: float) -> list[Command]:
        return [ProbeParent(parent) for parent in self._router.probes_due(now)]

    def has_usable_upstream(self, now: float) -> bool:
        """Readiness: some upstream is in rotation."""
        return self._router.is_usable(now)

    @property
    def stored_objects(self) -> int:
        """Objects stored, in memory and on disk."""
        return len(self._by_object)

    @property
    def stored_bytes(self) -> int:
        """Bytes charged to the memory tier."""
        return self._index.used_bytes

    def admission_gauges(self, now: float) -> Mapping[str, float]:
        """The admission policy's own state for metrics (e.g. the viral hot threshold)."""
        return self._admission.gauges(now)

    @property
    def disk_objects(self) -> int:
        return 0 if self._disk_index is None else len(self._disk_index)

    @property
    def disk_bytes(self) -> int:
        """Bytes charged to the disk tier."""
        return 0 if self._disk_index is None else self._disk_index.used_bytes

    # ---- recv, hash, lookup -----------------------------------------------------------------

    def _recv(self, event: RequestReceived) -> Iterator[Command]:
        try:
            path = check_raw_path(event.target)
        except UnsafePath as exc:
            yield self._synth(event.request_id, 400, f"bad request path: {exc}")
            return
        method = event.method.upper()
        ref = classify(path)
        NodeStats.bump(self.stats.requests, ref.kind)
        if method in REFUSED_METHODS:
            yield self._synth(event.request_id, 405, f"method {method} not allowed")
            return
        if self.settings.require_signed and path.startswith(SIGNED_PATH_PREFIX):
            query = event.target.partition("?")[2]
            verdict = verify(path, query, event.now, self.settings.signing_keys)
            if verdict is not Verdict.OK:
                yield self._synth(event.request_id, 403, verdict.message)
                return
        # hash: the whole target, query included (RFC 9111 section 2), except a signed URL's
        # token: every viewer of an object shares one entry, whatever token they hold.
        key = self._cache_key(event.target)
        waiter = _Waiter(event.request_id, method, event.headers)
        if method not in CACHEABLE_METHODS or self._pass_until.get(key, 0.0) > event.now:
            self.stats.passes += 1
            yield from self._start_pass(key, ref, waiter, event.now, method in UNSAFE_METHODS)
            return
        self._admission.observe(ref, event.now)
        yield from self._lookup(key, ref, waiter, event.now)

    @staticmethod
    def is_plain_request(method: str, headers: Mapping[str, str]) -> bool:
        """Whether a request is plain: a GET or HEAD with no precondition, Range or
        Cache-Control, answered alike for every client (the only kind `plain_hit` repeats)."""
        return method in _PLAIN_METHODS and NOT_PLAIN_FIELDS.isdisjoint(headers)

    def plain_hit(self, target: str, method: str, now: float) -> PlainHit | None:
        """The hit a plain request (`is_plain_request`) for `target` gets when the last plain
        request for it was a fresh hit and it still is one, with the bookkeeping of that hit
        done; None (and nothing counted) when the general path must decide.

        What that earlier hit established is not derived again: the target's path is safe, it
        is its own cache key (no signed-URL token to strip), and it has a single variant, so
        no Vary selection. What may have changed since is checked: the object is still the
        key's only one, still in memory, still fresh, and the key not turned pass-only.
        A shell may keep what it rendered of a hit for as long as the hits it gets are equal.
        """
        stored = self._plain_hits.get(target)
        if stored is None or method not in _PLAIN_METHODS:
            return None
        shared = stored.shared
        variants = self._variants.get(stored.key)
        if (
            stored.on_disk
            or variants is None
            or len(variants) != 1
            or variants[0] is not stored
            or shared is None
            or shared.meta is not stored.meta
            or shared.plain_fields is None
        ):
            del self._plain_hits[target]
            return None
        age = shared.initial_age + max(0.0, now - stored.meta.response_time)
        ttl = shared.lifetime - age
        if ttl <= 0 or self._pass_until.get(stored.key, 0.0) > now:
            return None
        # The bookkeeping of `_recv`, `_lookup` and `_serve_hit`, in that order.
        kind = stored.ref.kind.value
        counts = self.stats.requests
        counts[kind] = counts.get(kind, 0) + 1
        self._admission.observe(stored.ref, now)
        self._index.lookup(stored.object_id, now)
        counts = self.stats.hits
        counts[kind] = counts.get(kind, 0) + 1
        return (stored.object_id, shared, caching.age_header_value(age), int(ttl // 1))

    @staticmethod
    def plain_hit_fields(hit: PlainHit) -> dict[str, str]:
        """The fields a plain hit is delivered with (`_delivery` of a plain request: no
        preconditions or range to evaluate)."""
        _, shared, age, ttl = hit
        assert shared.plain_fields is not None  # `plain_hit` gives only hits on a 200
        headers = shared.plain_fields.copy()
        headers["age"] = age
        headers["cache-status"] = f"{shared.plain_status}{ttl}"
        return headers

    def _plain_hit(self, event: RequestReceived) -> ServeStored | None:
        if not self.is_plain_request(event.method, event.headers):
            return None
        hit = self.plain_hit(event.target, event.method, event.now)
        if hit is None:
            return None
        return ServeStored(
            hit[0],
            Delivery(
                event.request_id, 200, self.plain_hit_fields(hit), with_body=event.method == "GET"
            ),
        )

    def _lookup(self, key: str, ref: ObjectRef, waiter: _Waiter, now: float) -> Iterator[Command]:
        request_cc = caching.parse_cache_control(waiter.headers.get("cache-control"))
        stored = self._select_variant(key, waiter.headers)
        if stored is not None:
            verdict = caching.evaluate_stored(waiter.headers, stored.meta, now)
            if verdict.state is caching.FreshnessState.FRESH:
                if self._plain_path_applies(key, stored, waiter):
                    self._plain_hits[key] = stored
                yield from self._hit(stored, waiter, now, self._hit_status)
                return
            if verdict.state is caching.FreshnessState.STALE_WHILE_REVALIDATE:
                self.stats.stale_served += 1
                yield from self._hit(stored, waiter, now, CacheStatus.hit(self.settings.name))
                if key not in self._fetch_for_key:
                    yield from self._start_fetch(key, ref, _Mode.REVALIDATE, [], now, stored)
                return
        if request_cc.only_if_cached:
            # RFC 9111 section 5.2.1.7: nothing usable stored, and the client forbids a fetch.
            yield self._synth(waiter.request_id, 504, "not in cache (only-if-cached)")
            return
        NodeStats.bump(self.stats.misses, ref.kind)
        in_flight = self._fetches.get(self._fetch_for_key.get(key, 0))
        if in_flight is not None:
            self.stats.coalesced_waiters += 1
            yield from self._join(in_flight, waiter, now)
            return
        mode = _Mode.FILL if stored is None else _Mode.REVALIDATE
        yield from self._start_fetch(key, ref, mode, [waiter], now, stored)
        if stored is None and key in self._variants:
            self._fetches[self._fetch_for_key[key]].forward_reason = "vary-miss"

    def _plain_path_applies(self, key: str, stored: _Stored, waiter: _Waiter) -> bool:
        """Whether later plain requests for `key` may take `_plain_hit` to `stored`."""
        return (
            waiter.method in _PLAIN_METHODS
            and stored.meta.status == 200
            and NOT_PLAIN_FIELDS.isdisjoint(waiter.headers)
            and not stored.vary
            and not stored.on_disk
            and len(self._variants[key]) == 1
            # A signed URL's target is not its key: such nodes verify every request in `_recv`.
            and not self.settings.signing_keys
            and not self.settings.require_signed
        )

    def _cache_key(self, target: str) -> str:
        return strip_token(target) if self.settings.signing_keys else target

    def _select_variant(self, key: str, request_headers: Fields) -> _Stored | None:
        for stored in self._variants.get(key, ()):
            if stored.meta.secondary_key == caching.secondary_key(request_headers, stored.vary):
                return stored
        return None

    # ---- miss and pass: fetches ---------------------------------------------------------------

    def _start_fetch(
        self,
        key: str,
        ref: ObjectRef,
        mode: _Mode,
        waiters: list[_Waiter],
        now: float,
        stale: _Stored | None = None,
    ) -> Iterator[Command]:
        leader_headers = waiters[0].headers if waiters else {}
        headers = self._upstream_fields(leader_headers)
        if mode is _Mode.REVALIDATE and stale is not None:
            headers.update(caching.validators_for_revalidation(stale.meta.headers))
        fetch = _Fetch(
            fetch_id=next(self._fetch_ids),
            key=key,
            ref=ref,
            mode=mode,
            method="GET",
            target=key,
            headers=headers,
            candidates=self._router.candidates(key, now),
            started=now,
            waiters=waiters,
            stale=stale,
        )
        self._fetches[fetch.fetch_id] = fetch
        self._fetch_for_key[key] = fetch.fetch_id
        yield from self._send(fetch, now)

    def _start_pass(
        self, key: str, ref: ObjectRef, waiter: _Waiter, now: float, invalidates: bool
    ) -> Iterator[Command]:
        fetch = _Fetch(
            fetch_id=next(self._fetch_ids),
            key=key,
            ref=ref,
            mode=_Mode.PASS,
            method=waiter.method,
            target=key,
            headers=self._upstream_fields(waiter.headers, keep_conditionals=True),
            candidates=self._router.candidates(key, now),
            started=now,
            waiters=[waiter],
            invalidates=invalidates,
        )
        self._fetches[fetch.fetch_id] = fetch
        yield from self._send(fetch, now)

    def _send(self, fetch: _Fetch, now: float) -> Iterator[Command]:
        """Send `fetch` to its next candidate, or give up when none is left."""
        if fetch.invalidates and not fetch.waiters:
            # An unsafe request whose client left (`ClientGone`) before it could be (re)sent:
            # its body went with the client, and nobody waits for the outcome.
            self._end_fetch(fetch)
            return
        if not fetch.candidates:
            yield from self._give_up(fetch, now, "no upstream answered")
            return
        fetch.upstream = fetch.candidates.pop(0)
        self.stats.upstream_fetches += 1
        yield FetchUpstream(
            fetch_id=fetch.fetch_id,
            target=fetch.upstream,
            method=fetch.method,
            path=self._upstream_target(fetch.target, now),
            headers=fetch.headers,
            want_body=fetch.mode is _Mode.PREWARM and fetch.ref.kind is ObjectKind.PLAYLIST,
            body_of=fetch.waiters[0].request_id if fetch.invalidates and fetch.waiters else None,
        )

    def _upstream_target(self, key: str, now: float) -> str:
        """What a fetch for `key` asks the upstream for: the key itself, plus for media at a
        node with signing keys, a token of the node's own for the object's directory.

        The node signs rather than forwarding a client's token because one fetch serves many
        clients and outlives any one request: a coalesced fetch, a failover to the next parent,
        a background revalidation or a pre-warm has no client token, or one that may expire
        first. Tiers share the keys (HMAC: whoever verifies can sign), so a regional node with
        `require_signed` accepts what its edges fetch; an origin ignores the query.
        """
        keys = self.settings.signing_keys
        path, _, query = key.partition("?")
        if not keys or not path.startswith(SIGNED_PATH_PREFIX):
            return key
        try:
            token = sign(
                check_prefix(path.rsplit("/", 1)[0] + "/"), int(now) + UPSTREAM_TOKEN_TTL, keys[0]
            )
        except ValueError:
            return key  # a directory outside the token alphabet: the upstream decides
        return f"{key}&{query_string(token)}" if query else f"{key}?{query_string(token)}"

    def _upstream_fields(
        self, client: Fields, *, keep_conditionals: bool = False
    ) -> dict[str, str]:
        dropped = _NOT_FORWARDED if keep_conditionals else _NOT_FORWARDED | _CLIENT_ONLY_FIELDS
        fields = end_to_end(client, also_drop=dropped)
        fields["via"] = _append_via(client.get("via"), self.settings.name)
        return fields

    def _join(self, fetch: _Fetch, waiter: _Waiter, now: float) -> Iterator[Command]:
        if not fetch.responded:
            fetch.waiters.append(waiter)
            return
        assert fetch.meta is not None
        if caching.secondary_key(waiter.headers, _vary_names(fetch.meta)) != (
            fetch.meta.secondary_key
        ):
            # Another variant of the key: it needs its own response.
            yield from self._start_pass(fetch.key, fetch.ref, waiter, now, invalidates=False)
            return
        status = CacheStatus.forward(self.settings.name, fetch.forward_reason, fetch.meta.status)
        yield AttachToFetch(
            fetch.fetch_id,
            self._delivery(waiter, fetch.meta, fetch.size_hint, now, status.collapsed()),
        )

    # ---- backend response -------------------------------------------------------------------

    def _backend_response(self, event: UpstreamResponded) -> Iterator[Command]:
        fetch = self._fetches.get(event.fetch_id)
        if fetch is None:
            return
        self._check_stale(fetch)
        if event.status in _PARENT_TROUBLE and fetch.candidates:
            # The parent, not the object, is failing: the next candidate may well answer.
            self._router.report_failure(fetch.upstream, event.now)
            yield ReleaseFetch(fetch.fetch_id)
            yield from self._send(fetch, event.now)
            return
        if (
            event.status >= 500
            and fetch.stale is not None
            and self._stale_if_error(fetch, event.now)
        ):
            yield ReleaseFetch(fetch.fetch_id)
            yield from self._serve_stale_after_error(fetch, event.now)
            return
        self._router.report_success(fetch.upstream, event.now)
        if fetch.mode is _Mode.REVALIDATE and event.status == 304:
            yield ReleaseFetch(fetch.fetch_id)
            if fetch.stale is not None and caching.selects_stored(
                [fetch.stale.meta], event.headers, now=event.now
            ):
                yield from self._revalidated(fetch, event)
            else:
                # RFC 9111 section 4.3.4: a 304 that selects nothing stored (or whose stored
                # response was purged meanwhile) cannot answer the waiters; fetch the full
                # response for them instead.
                yield from self._refetch_in_full(fetch, event.now)
            return
        yield from self._stream_response(fetch, event)

    def _stream_response(self, fetch: _Fetch, event: UpstreamResponded) -> Iterator[Command]:
        fetch.responded = True
        leader_headers = fetch.waiters[0].headers if fetch.waiters else fetch.headers
        vary = caching.vary_field_names(event.headers)
        fetch.meta = caching.StoredResponseMeta(
            status=event.status,
            headers=dict(event.headers),
            request_time=fetch.started,
            response_time=event.now,
            secondary_key=caching.secondary_key(leader_headers, vary or ()),
            lifetime_floor=self._negative_lifetime(event),
        )
        fetch.size_hint = _content_length(event.headers)
        fetch.shareable = (
            fetch.mode is not _Mode.PASS
            and vary is not None
            and caching.is_storable(fetch.method, event.status, leader_headers, event.headers)
        )
        if fetch.mode is _Mode.PASS:
            yield from self._stream_pass(fetch, event)
            return
        # A server error is not stored, but it is a fact about the upstream right now, not about
        # the object: it goes to every waiter (rather than sending each to the struggling
        # upstream on its own), and it does not make the key pass-only.
        server_error = event.status >= 500
        if not fetch.shareable:
            # Pass-only when the response itself cannot be shared, not when only the leader's
            # request forbade it (request no-store, Authorization): any client could otherwise
            # turn caching of a key off for everyone.
            if not server_error and not caching.is_storable(
                fetch.method, event.status, {}, event.headers
            ):
                self._remember_pass_only(fetch.key, event.now)
            self._release_key(fetch)
        elif not fetch.purged and self._admits(fetch, event):
            fetch.store_as = f"{self.settings.object_id_prefix}{next(self._object_ids)}:{fetch.key}"
        status = CacheStatus.forward(
            self.settings.name,
            fetch.forward_reason if fetch.stale is None else "stale",
            event.status,
        )
        if fetch.store_as is not None:
            status = status.stored()
        deliveries: list[Delivery] = []
        for position, waiter in enumerate(fetch.waiters):
            if not fetch.shareable and not server_error and position > 0:
                continue  # released below: the response is the leader's alone
            matches = caching.secondary_key(waiter.headers, vary or ()) == fetch.meta.secondary_key
            if matches:
                shown = status if position == 0 else status.collapsed()
                deliveries.append(
                    self._delivery(waiter, fetch.meta, fetch.size_hint, event.now, shown)
                )
        released = [
            w for w in fetch.waiters if w.request_id not in {d.request_id for d in deliveries}
        ]
        fetch.waiters = []
        yield StreamFetch(fetch.fetch_id, tuple(deliveries))
        for waiter in released:
            self.stats.passes += 1
            yield from self._start_pass(fetch.key, fetch.ref, waiter, event.now, invalidates=False)

    def _stream_pass(self, fetch: _Fetch, event: UpstreamResponded) -> Iterator[Command]:
        assert fetch.meta is not None
        if not fetch.waiters:
            # Its client left (`ClientGone`): nobody reads the body. An unsafe request was
            # still processed upstream, so it still invalidates (below).
            self._end_fetch(fetch)
            yield ReleaseFetch(fetch.fetch_id)
        else:
            waiter = fetch.waiters[0]
            fetch.waiters = []
            headers = end_to_end(event.headers)
            headers["cache-status"] = _append_status(
                event.headers, CacheStatus.forward(self.settings.name, "bypass", event.status)
            )
            headers["via"] = _append_via(event.headers.get("via"), self.settings.name)
            delivery = Delivery(
                waiter.request_id, event.status, headers, with_body=waiter.method != "HEAD"
            )
            yield StreamFetch(fetch.fetch_id, (delivery,))
        if fetch.invalidates and event.status < 400:
            keys = caching.invalidated_uris(fetch.method, event.status, fetch.key, event.headers)
            yield from self._drop_keys(keys)

    def _admits(self, fetch: _Fetch, event: UpstreamResponded) -> bool:
        request_cc = caching.parse_cache_control(fetch.headers.get("cache-control"))
        if request_cc.no_store:
            return False
        size = fetch.size_hint or 0
        if size > self._index.capacity_bytes or (
            fetch.mode is not _Mode.PREWARM
            and not self._admission.admit(fetch.ref, size, event.now)
        ):
            self.stats.admission_rejects += 1
            return False
        return True

    def _negative_lifetime(self, event: UpstreamResponded) -> float | None:
        # Short negative caching: a 404 without explicit freshness lives `negative_ttl`.
        if event.status == 404 and not caching.has_explicit_freshness(event.headers):
            return self.settings.negative_ttl
        return None

    def _revalidated(self, fetch: _Fetch, event: UpstreamResponded) -> Iterator[Command]:
        """RFC 9111 section 4.3.4: a 304 freshens the stored response; serve it."""
        stored = fetch.stale
        assert stored is not None
        self._end_fetch(fetch)
        stored.meta = caching.StoredResponseMeta(
            status=stored.meta.status,
            headers=caching.freshen_headers(stored.meta.headers, event.headers),
            request_time=fetch.started,
            response_time=event.now,
            secondary_key=stored.meta.secondary_key,
            lifetime_floor=stored.meta.lifetime_floor,
        )
        status = CacheStatus.forward(self.settings.name, "stale", 304)
        for position, waiter in enumerate(fetch.waiters):
            shown = status if position == 0 else status.collapsed()
            yield from self._hit(stored, waiter, event.now, shown)

    def _refetch_in_full(self, fetch: _Fetch, now: float) -> Iterator[Command]:
        stale = fetch.stale
        self._end_fetch(fetch)
        if stale is not None:
            self._forget_object(stale.object_id)
            yield DropStored((stale.object_id,))
        yield from self._start_fetch(fetch.key, fetch.ref, _Mode.FILL, fetch.waiters, now)

    def _upstream_failed(self, event: UpstreamFailed) -> Iterator[Command]:
        fetch = self._fetches.get(event.fetch_id)
        if fetch is None:
            return
        self.stats.upstream_failures += 1
        self._router.report_failure(fetch.upstream, event.now)
        if fetch.responded:
            # Mid-body: the streams already started are cut; nothing of it is stored.
            self._end_fetch(fetch)
            yield AbortFetch(fetch.fetch_id)
            return
        if fetch.invalidates and event.request_sent:
            # RFC 9110 section 9.2.2: the upstream may have acted on a non-idempotent request,
            # so it is not repeated elsewhere; the client decides.
            fetch.candidates = []
        yield from self._send(fetch, event.now)

    def _check_stale(self, fetch: _Fetch) -> None:
        """Forget the stale copy of `fetch` if it was evicted (or purged) while in flight: the
        shell no longer has its bytes, so it can neither be freshened nor served on error."""
        if fetch.stale is not None and fetch.stale.object_id not in self._by_object:
            fetch.stale = None

    def _give_up(self, fetch: _Fetch, now: float, reason: str) -> Iterator[Command]:
        self._check_stale(fetch)
        if fetch.stale is not None and self._stale_if_error(fetch, now):
            yield from self._serve_stale_after_error(fetch, now)
            return
        self._end_fetch(fetch)
        # RFC 9111 section 4.2.4: a stored response that must not be served stale becomes a 504.
        status = 504 if fetch.mode is _Mode.REVALIDATE else 502
        for waiter in fetch.waiters:
            yield self._synth(waiter.request_id, status, f"{self.settings.name}: {reason}")

    def _stale_if_error(self, fetch: _Fetch, now: float) -> bool:
        assert fetch.stale is not None
        request_headers = fetch.waiters[0].headers if fetch.waiters else {}
        return caching.evaluate_stored(request_headers, fetch.stale.meta, now).usable_if_error(now)

    def _serve_stale_after_error(self, fetch: _Fetch, now: float) -> Iterator[Command]:
        stored = fetch.stale
        assert stored is not None
        self._end_fetch(fetch)
        status = CacheStatus.forward(self.settings.name, "stale", None).detail("stale-if-error")
        for waiter in fetch.waiters:
            self.stats.stale_served += 1
            yield from self._hit(stored, waiter, now, status)

    def _fetch_completed(self, event: FetchCompleted) -> Iterator[Command]:
        fetch = self._fetches.get(event.fetch_id)
        if fetch is None:
            yield ReleaseFetch(event.fetch_id)
            return
        self._end_fetch(fetch)
        if fetch.mode is _Mode.PREWARM and event.body is not None:
            yield ReleaseFetch(fetch.fetch_id)
            yield from self._prewarm_from_playlist(fetch, event.body, event.now)
            return
        if fetch.store_as is None or fetch.meta is None:
            yield ReleaseFetch(fetch.fetch_id)
            return
        yield from self._store(fetch, event.size, event.now)

    def _store(self, fetch: _Fetch, size: int, now: float) -> Iterator[Command]:
        assert fetch.store_as is not None and fetch.meta is not None
        charge = _charge(size, fetch.meta)
        if charge > self._index.capacity_bytes:
            yield ReleaseFetch(fetch.fetch_id)
            return
        # A new response replaces the stored one of the same variant (RFC 9111 section 3.1).
        replaced = [
            s.object_id
            for s in self._variants.get(fetch.key, ())
            if s.meta.secondary_key == fetch.meta.secondary_key
        ]
        for object_id in replaced:
            self._forget_object(object_id)
        evicted = self._index.insert(fetch.store_as, charge, now)
        stored = _Stored(
            fetch.store_as, fetch.key, fetch.ref, fetch.meta, size, _vary_names(fetch.meta)
        )
        self._variants.setdefault(fetch.key, []).append(stored)
        self._by_object[stored.object_id] = stored
        yield StoreFetched(fetch.fetch_id, stored.object_id)
        if replaced:
            yield DropStored(tuple(replaced))
        yield from self._demote(evicted, now)

    def _demote(self, evicted_from_memory: list[str], now: float) -> Iterator[Command]:
        """Memory evictions go down to the disk tier when there is one, else away."""
        dropped: list[str] = []
        for object_id in evicted_from_memory:
            stored = self._by_object.get(object_id)
            if stored is None:
                continue
            charge = _charge(stored.size, stored.meta)
            if self._disk_index is None or charge > self._disk_index.capacity_bytes:
                self._forget_object(object_id, evicted=True)
                dropped.append(object_id)
                continue
            stored.on_disk = True
            stored.disk_hits = 0
            if self._plain_hits.get(stored.key) is stored:
                del self._plain_hits[stored.key]
            self.stats.demotions += 1
            yield Demote(object_id, _record(stored))
            for victim in self._disk_index.insert(object_id, charge, now):
                self._forget_object(victim, evicted=True)
                dropped.append(victim)
        if dropped:
            yield DropStored(tuple(dropped))

    def _shut_down(self, now: float) -> Iterator[Command]:
        """Demote everything memory holds, so a restart finds it in the disk tier."""
        if self._disk_index is None:
            return
        in_memory = [s.object_id for s in self._by_object.values() if not s.on_disk]
        for object_id in in_memory:
            self._index.remove(object_id)
        yield from self._demote(in_memory, now)

    def _promote(self, stored: _Stored, now: float) -> Iterator[Command]:
        """A disk hit: once an object has had `disk_promote_hits` of them it is warm again, so
        it goes back to memory."""
        assert self._disk_index is not None
        stored.disk_hits += 1
        charge = _charge(stored.size, stored.meta)
        if (
            stored.disk_hits < self.settings.disk_promote_hits
            or charge > self._index.capacity_bytes
        ):
            self._disk_index.lookup(stored.object_id, now)
            return
        self._disk_index.remove(stored.object_id)
        stored.on_disk = False
        evicted = self._index.insert(stored.object_id, charge, now)
        self.stats.promotions += 1
        yield Promote(stored.object_id)
        yield from self._demote(evicted, now)

    def _restore(self, event: StoredObjectFound) -> Iterator[Command]:
        """A record found in the disk tier at start becomes a stored object again."""
        try:
            stored = _stored_from_record(event.object_id, event.record)
        except (KeyError, TypeError, ValueError):
            yield DropStored((event.object_id,))
            return
        charge = _charge(stored.size, stored.meta)
        if self._disk_index is None or charge > self._disk_index.capacity_bytes:
            yield DropStored((event.object_id,))
            return
        stored.on_disk = True
        self._variants.setdefault(stored.key, []).append(stored)
        self._by_object[stored.object_id] = stored
        victims = self._disk_index.insert(stored.object_id, charge, event.now)
        for victim in victims:
            self._forget_object(victim, evicted=True)
        if victims:
            yield DropStored(tuple(victims))

    def _remember_pass_only(self, key: str, now: float) -> None:
        """Hit-for-pass for `key`, in a table that never outgrows `MAX_PASS_ONLY_KEYS`."""
        if len(self._pass_until) >= MAX_PASS_ONLY_KEYS:
            for expired in [k for k, until in self._pass_until.items() if until <= now]:
                del self._pass_until[expired]
            while len(self._pass_until) >= MAX_PASS_ONLY_KEYS:
                # Still full of live verdicts: forget the oldest (it costs one coalesced wait).
                del self._pass_until[next(iter(self._pass_until))]
        self._pass_until.pop(key, None)
        self._pass_until[key] = now + self.settings.uncacheable_ttl

    def _end_fetch(self, fetch: _Fetch) -> None:
        self._fetches.pop(fetch.fetch_id, None)
        self._release_key(fetch)

    def _release_key(self, fetch: _Fetch) -> None:
        """New requests for the key no longer join `fetch` (another fetch may own it by now)."""
        if self._fetch_for_key.get(fetch.key) == fetch.fetch_id:
            del self._fetch_for_key[fetch.key]

    # ---- deliver ----------------------------------------------------------------------------

    def _hit(
        self, stored: _Stored, waiter: _Waiter, now: float, status: CacheStatus
    ) -> Iterator[Command]:
        on_disk = stored.on_disk
        yield self._serve_hit(stored, waiter, now, status)
        if on_disk:
            yield from self._promote(stored, now)

    def _serve_hit(
        self, stored: _Stored, waiter: _Waiter, now: float, status: CacheStatus
    ) -> ServeStored:
        if not stored.on_disk:
            self._index.lookup(stored.object_id, now)
        NodeStats.bump(self.stats.hits, stored.ref.kind)
        shared = stored.shared_facts(self.settings.name)
        # current_age (RFC 9111 section 4.2.3): the initial age plus the resident time.
        age = shared.initial_age + max(0.0, now - stored.meta.response_time)
        ttl = shared.lifetime - age
        delivery = self._delivery(
            waiter,
            stored.meta,
            stored.size,
            now,
            status.with_ttl(ttl),
            age=age,
            fields=shared.headers,
        )
        return ServeStored(stored.object_id, delivery)

    def _delivery(
        self,
        waiter: _Waiter,
        meta: caching.StoredResponseMeta,
        size: int | None,
        now: float,
        status: CacheStatus,
        *,
        age: float | None = None,
        fields: dict[str, str] | None = None,
    ) -> Delivery:
        """The answer to `waiter` from a response: client conditionals, Range, HEAD (deliver).

        `fields`: `_delivered_fields(meta)`, when the caller has it already."""
        headers = _delivered_fields(meta) if fields is None else fields.copy()
        if age is not None:
            headers["age"] = caching.age_header_value(age)
        elif "age" in meta.headers:
            headers["age"] = meta.headers["age"]
        headers["cache-status"] = _append_status(meta.headers, status)
        # RFC 9110 section 7.6.3: every proxy adds itself to Via, responses included.
        headers["via"] = _append_via(meta.headers.get("via"), self.settings.name)
        with_body = waiter.method != "HEAD"
        if meta.status != 200:
            if size is not None:
                headers["content-length"] = str(size)
            return Delivery(waiter.request_id, meta.status, headers, with_body=with_body)
        if not any(name in waiter.headers for name in _PRECONDITION_FIELDS):
            # No conditionals: nothing to evaluate (section 13.2.2 ends at step 5 with the
            # Range honoured for a GET), and no validator to parse.
            evaluation = _UNCONDITIONAL[waiter.method == "GET"]
        else:
            evaluation = self._evaluate_preconditions(waiter, meta, now)
        if evaluation.outcome is Precondition.NOT_MODIFIED:
            return Delivery(waiter.request_id, 304, _not_modified_fields(headers), with_body=False)
        if evaluation.outcome is Precondition.PRECONDITION_FAILED:
            return Delivery(waiter.request_id, 412, {"content-length": "0"}, with_body=False)
        if size is not None and evaluation.honour_range:
            decision = parse_range(waiter.headers.get("range"), size)
            if isinstance(decision, UnsatisfiableRange):
                return Delivery(
                    waiter.request_id,
                    416,
                    {"content-range": decision.content_range, "content-length": "0"},
                    with_body=False,
                )
            if isinstance(decision, SatisfiableRange):
                headers["content-range"] = decision.content_range
                headers["content-length"] = str(decision.length)
                return Delivery(
                    waiter.request_id,
                    206,
                    headers,
                    byte_range=(decision.start, decision.end),
                    with_body=with_body,
                )
        if size is not None:
            headers["content-length"] = str(size)
        return Delivery(waiter.request_id, 200, headers, with_body=with_body)

    @staticmethod
    def _evaluate_preconditions(
        waiter: _Waiter, meta: caching.StoredResponseMeta, now: float
    ) -> Evaluation:
        last_modified = meta.headers.get("last-modified")
        return evaluate_preconditions(
            waiter.method,
            ConditionalHeaders(
                if_match=waiter.headers.get("if-match"),
                if_none_match=waiter.headers.get("if-none-match"),
                if_modified_since=waiter.headers.get("if-modified-since"),
                if_unmodified_since=waiter.headers.get("if-unmodified-since"),
                if_range=waiter.headers.get("if-range"),
            ),
            Validators(
                etag=meta.headers.get("etag"),
                last_modified=(
                    None if last_modified is None else parse_http_date(last_modified, now=now)
                ),
            ),
            has_range="range" in waiter.headers,
            now=now,
        )

    def _synth(self, request_id: int, status: int, message: str) -> Respond:
        body = (message + "\n").encode()
        return Respond(
            request_id,
            status,
            {
                "content-type": "text/plain; charset=utf-8",
                "content-length": str(len(body)),
                "cache-status": str(CacheStatus.forward(self.settings.name, "request", None)),
            },
            body,
        )

    # ---- purge, invalidation, trending -------------------------------------------------------

    def _purge(self, event: PurgeRequested) -> Iterator[Command]:
        if event.whole_video:
            prefix = event.path.rstrip("/") + "/"
            keys = [k for k in self._keys() if k.split("?", 1)[0].startswith(prefix)]
        else:
            keys = [k for k in self._keys() if k.split("?", 1)[0] == event.path]
        self.stats.purged += len(keys)
        yield from self._drop_keys(keys)

    def _keys(self) -> set[str]:
        return set(self._variants) | set(self._fetch_for_key)

    def _drop_keys(self, keys: Iterable[str]) -> Iterator[Command]:
        dropped: list[str] = []
        for key in keys:
            for stored in list(self._variants.get(key, ())):
                self._forget_object(stored.object_id)
                self._index.remove(stored.object_id)
                dropped.append(stored.object_id)
            # A fetch in flight for the key must not store what it brings, nor gain waiters,
            # nor answer them from the purged copy it was revalidating.
            fetch = self._fetches.get(self._fetch_for_key.pop(key, 0))
            if fetch is not None:
                fetch.store_as = None
                fetch.stale = None
                fetch.purged = True
        if dropped:
            yield DropStored(tuple(dropped))

    def _forget_object(self, object_id: str, *, evicted: bool = False) -> None:
        stored = self._by_object.pop(object_id, None)
        if stored is None:
            return
        if self._plain_hits.get(stored.key) is stored:
            del self._plain_hits[stored.key]
        if evicted:
            self.stats.evictions += 1
        elif stored.on_disk and self._disk_index is not None:
            self._disk_index.remove(object_id)
        else:
            self._index.remove(object_id)
        variants = self._variants.get(stored.key, [])
        variants[:] = [s for s in variants if s.object_id != object_id]
        if not variants:
            self._variants.pop(stored.key, None)

    def _forget_waiter(self, request_id: int) -> None:
        for fetch in self._fetches.values():
            fetch.waiters = [w for w in fetch.waiters if w.request_id != request_id]

    def _trending(self, event: TrendingHinted) -> Iterator[Command]:
        self._admission.hint_trending(event.video_ids, event.now)
        for video_id in event.video_ids:
            yield from self._prewarm(f"/v/{video_id}/master.m3u8", event.now)

    def _prewarm(self, target: str, now: float) -> Iterator[Command]:
        try:
            check_raw_path(target)
        except UnsafePath:
            return
        # The URIs of a signed playlist carry tokens: the object is stored under its key.
        target = self._cache_key(target)
        if target in self._variants or target in self._fetch_for_key:
            return
        yield from self._start_fetch(target, classify(target), _Mode.PREWARM, [], now)

    def _prewarm_from_playlist(self, fetch: _Fetch, body: bytes, now: float) -> Iterator[Command]:
        """Pre-warm what a viewer needs first: every rung's playlist, init and first segment."""
        try:
            playlist = parse(body.decode("utf-8"))
        except (ManifestError, UnicodeDecodeError):
            return
        base = fetch.key.split("?", 1)[0].rsplit("/", 1)[0]
        if isinstance(playlist, MasterPlaylist):
            targets = [f"{base}/{variant.uri}" for variant in playlist.variants]
        else:
            targets = [f"{base}/{s.uri}" for s in playlist.segments[:1]]
            if playlist.init is not None:
                targets.insert(0, f"{base}/{playlist.init.uri}")
        for target in targets:
            yield from self._prewarm(target, now)


def _record(stored: _Stored) -> dict[str, object]:
    """What the disk tier keeps beside an object's body to know it again after a restart."""
    meta = stored.meta
    return {
        "key": stored.key,
        "size": stored.size,
        "status": meta.status,
        "headers": dict(meta.headers),
        "request_time": meta.request_time,
        "response_time": meta.response_time,
        "secondary_key": list(meta.secondary_key),
        "lifetime_floor": meta.lifetime_floor,
    }


def _stored_from_record(object_id: str, record: Mapping[str, object]) -> _Stored:
    """The inverse of `_record`; KeyError, TypeError or ValueError for a record that is not."""
    key, headers = record["key"], record["headers"]
    secondary, floor = record["secondary_key"], record["lifetime_floor"]
    if not isinstance(key, str) or not isinstance(headers, dict) or not isinstance(secondary, list):
        raise TypeError("malformed disk record")
    check_raw_path(key.split("?", 1)[0])
    meta = caching.StoredResponseMeta(
        status=int(str(record["status"])),
        headers={str(name): str(value) for name, value in headers.items()},
        request_time=float(str(record["request_time"])),
        response_time=float(str(record["response_time"])),
        secondary_key=tuple(None if v is None else str(v) for v in secondary),
        lifetime_floor=None if floor is None else float(str(floor)),
    )
    ref = classify(key.split("?", 1)[0])
    return _Stored(object_id, key, ref, meta, int(str(record["size"])), _vary_names(meta))


def _charge(size: int, meta: caching.StoredResponseMeta) -> int:
    """Bytes an object counts against the capacity: its body plus its bookkeeping."""
    fields = sum(len(name) + len(value) for name, value in meta.headers.items())
    return size + fields + OBJECT_OVERHEAD_BYTES


def _delivered_fields(meta: caching.StoredResponseMeta) -> dict[str, str]:
    """The stored fields a delivery passes on: end-to-end ones, less those it sets itself."""
    return {k: v for k, v in end_to_end(meta.headers).items() if k not in _DELIVERY_FIELDS}


def _vary_names(meta: caching.StoredResponseMeta) -> tuple[str, ...]:
    return caching.vary_field_names(meta.headers) or ()


def _content_length(headers: Fields) -> int | None:
    value = headers.get("content-length", "")
    return int(value) if value.isdigit() and len(value) <= 15 else None


def _append_via(existing: str | None, name: str) -> str:
    hop = f"1.1 {name}"
    return f"{existing}, {hop}" if existing else hop


def _append_status(upstream: Fields, status: CacheStatus | str) -> str:
    # RFC 9211 section 2: the list grows toward the client; upstream caches come first.
    previous = upstream.get("cache-status")
    return f"{previous}, {status}" if previous else str(status)


def _not_modified_fields(fields: dict[str, str]) -> dict[str, str]:
    # RFC 9110 section 15.4.5: a 304 carries the validator and caching fields, no content.
    kept = {"etag", "cache-control", "expires", "vary", "content-location", "date", "age", "via"}
    return {k: v for k, v in fields.items() if k in kept or k == "cache-status"}
