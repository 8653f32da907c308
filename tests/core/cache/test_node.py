"""CacheNode in playbook style: events in, the exact commands out; plus invariants under random
interleavings of requests, upstream outcomes, purges and time."""

from collections.abc import Mapping

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import core.cache.node as node_module
from core.cache.admission import AdmissionSettings, create_admission_policy
from core.cache.commands import (
    AbortFetch,
    AttachToFetch,
    Command,
    Delivery,
    DropStored,
    FetchUpstream,
    ReleaseFetch,
    Respond,
    ServeStored,
    StoreFetched,
    StreamFetch,
)
from core.cache.events import (
    ClientGone,
    FetchCompleted,
    PurgeRequested,
    RequestReceived,
    TrendingHinted,
    UpstreamFailed,
    UpstreamResponded,
)
from core.cache.eviction import create_eviction_policy
from core.cache.index import CacheIndex
from core.cache.node import OBJECT_OVERHEAD_BYTES, CacheNode, NodeSettings
from core.cache.routing import ParentRouter
from tests.playbook import Expect, Playbook

T0 = 1_700_000_000.0
SEGMENT = "/v/abc/360p/seg_00003.m4s"
PARENTS = ("http://r1", "http://r2")
ORIGIN = "http://o"


def make_node(
    capacity: int = 10_000,
    admission: str = "always",
    origin: str | None = ORIGIN,
    disk_capacity: int = 0,
) -> CacheNode:
    return CacheNode(
        NodeSettings(name="edge-t", tier="edge", parents=PARENTS, origin=origin),
        index=CacheIndex(capacity, create_eviction_policy("lru", capacity_bytes=capacity)),
        disk_index=CacheIndex(
            disk_capacity, create_eviction_policy("lru", capacity_bytes=disk_capacity)
        )
        if disk_capacity
        else None,
        admission=create_admission_policy(admission, AdmissionSettings()),
        router=ParentRouter(PARENTS, origin),
    )


def get(request_id: int, now: float = T0, target: str = SEGMENT, **headers: str) -> RequestReceived:
    fields = {name.replace("_", "-"): value for name, value in headers.items()}
    return RequestReceived(request_id, "GET", target, fields, now)


def ok(fetch_id: int, now: float = T0, size: int = 10, **headers: str) -> UpstreamResponded:
    fields = {"content-length": str(size), "etag": '"v1"', "cache-control": "max-age=60"}
    fields.update({name.replace("_", "-"): value for name, value in headers.items()})
    return UpstreamResponded(fetch_id, 200, fields, now)


def statuses(deliveries: tuple[Delivery, ...]) -> list[str]:
    return [d.headers["cache-status"] for d in deliveries]


def fill(playbook: Playbook, size: int = 10, cache_control: str = "max-age=60") -> FetchUpstream:
    """Miss, fetch, stream and store one object (request 1); return the fetch command."""
    playbook >> get(1)
    fetch: FetchUpstream = playbook.take(FetchUpstream)
    playbook >> ok(fetch.fetch_id, size=size, cache_control=cache_control)
    playbook.take(StreamFetch)
    playbook >> FetchCompleted(fetch.fetch_id, size, T0)
    playbook.take(StoreFetched)
    playbook.done()
    return fetch


def test_miss_fetches_streams_stores_then_hits() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1, range="bytes=0-3", if_none_match='"x"', connection="close")
    fetch = playbook << Expect(FetchUpstream, method="GET", path=SEGMENT, want_body=False)
    assert fetch.target in PARENTS
    # The cache fetches the whole object with its own validators: the client's are applied later.
    assert "range" not in fetch.headers and "if-none-match" not in fetch.headers
    assert "connection" not in fetch.headers
    assert fetch.headers["via"] == "1.1 edge-t"
    playbook >> ok(fetch.fetch_id)
    stream = playbook.take(StreamFetch)
    (delivery,) = stream.deliveries
    assert delivery.status == 206 and delivery.byte_range == (0, 3)
    assert delivery.headers["cache-status"] == "edge-t; fwd=uri-miss; fwd-status=200; stored"
    playbook >> FetchCompleted(fetch.fetch_id, 10, T0 + 1)
    stored = playbook << Expect(StoreFetched, fetch_id=fetch.fetch_id)
    playbook >> get(2, now=T0 + 11)
    hit = playbook << Expect(ServeStored, object_id=stored.object_id)
    assert hit.delivery.status == 200
    assert hit.delivery.headers["cache-status"] == "edge-t; hit; ttl=49"
    assert hit.delivery.headers["age"] == "11"
    assert hit.delivery.headers["content-length"] == "10"
    playbook.done()


def test_a_burst_costs_one_fetch_and_every_waiter_one_answer() -> None:
    playbook = Playbook(make_node())
    for request_id in range(1, 6):
        playbook >> get(request_id)
    fetch = playbook.take(FetchUpstream)
    playbook.done()  # the other four wait: no second fetch
    playbook >> ClientGone(3, T0)
    playbook >> ok(fetch.fetch_id)
    stream = playbook.take(StreamFetch)
    assert [d.request_id for d in stream.deliveries] == [1, 2, 4, 5]
    assert statuses(stream.deliveries)[1].endswith("stored; collapsed")
    # Arriving while the body streams: attached to the same fetch, from the first byte.
    playbook >> get(6)
    attached = playbook << Expect(AttachToFetch, fetch_id=fetch.fetch_id)
    assert attached.delivery.request_id == 6
    playbook >> FetchCompleted(fetch.fetch_id, 10, T0)
    playbook.take(StoreFetched)
    playbook.done()


def test_failover_then_502_for_every_waiter() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1) >> get(2)
    first = playbook.take(FetchUpstream)
    tried = [first.target]
    for _ in range(2):
        playbook >> UpstreamFailed(first.fetch_id, "refused", T0)
        retry = playbook << Expect(FetchUpstream, fetch_id=first.fetch_id)
        tried.append(retry.target)
    assert sorted(tried[:2]) == sorted(PARENTS) and tried[2] == ORIGIN
    playbook >> UpstreamFailed(first.fetch_id, "refused", T0)
    answers = [playbook << Expect(Respond, status=502) for _ in range(2)]
    assert sorted(a.request_id for a in answers) == [1, 2]
    playbook.done()


def test_failed_parents_back_off_so_the_next_key_skips_them() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1)
    first = playbook.take(FetchUpstream)
    playbook >> UpstreamFailed(first.fetch_id, "refused", T0)
    playbook.take(FetchUpstream)
    playbook >> get(2, target="/v/other/360p/seg_00001.m4s")
    second = playbook.take(FetchUpstream)
    assert second.target != first.target


def test_a_body_cut_mid_way_is_aborted_and_never_stored() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1)
    fetch = playbook.take(FetchUpstream)
    playbook >> ok(fetch.fetch_id)
    playbook.take(StreamFetch)
    playbook >> UpstreamFailed(fetch.fetch_id, "reset", T0)
    playbook << Expect(AbortFetch, fetch_id=fetch.fetch_id)
    playbook >> get(2)
    playbook.take(FetchUpstream)  # nothing was stored: a new fetch
    playbook.done()


def test_private_responses_release_waiters_and_bypass_for_a_while() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1) >> get(2)
    fetch = playbook.take(FetchUpstream)
    playbook >> ok(fetch.fetch_id, cache_control="private, max-age=60")
    stream = playbook.take(StreamFetch)
    assert [d.request_id for d in stream.deliveries] == [1]
    own = playbook.take(FetchUpstream)  # request 2 gets its own response
    assert own.fetch_id != fetch.fetch_id
    playbook >> get(3, now=T0 + 1)
    playbook.take(FetchUpstream)  # hit-for-pass: no waiting behind anything
    playbook.done()


def test_stale_object_is_revalidated_and_a_304_freshens_it() -> None:
    playbook = Playbook(make_node())
    fill(playbook, cache_control="max-age=5")
    playbook >> get(2, now=T0 + 10)
    revalidation = playbook.take(FetchUpstream)
    assert revalidation.headers["if-none-match"] == '"v1"'
    playbook >> UpstreamResponded(
        revalidation.fetch_id, 304, {"etag": '"v1"', "cache-control": "max-age=100"}, T0 + 10
    )
    playbook.take(ReleaseFetch)
    served = playbook.take(ServeStored)
    assert served.delivery.headers["cache-control"] == "max-age=100"
    assert served.delivery.headers["cache-status"].startswith("edge-t; fwd=stale; fwd-status=304")
    playbook >> get(3, now=T0 + 50)
    playbook.take(ServeStored)  # fresh again under the new max-age
    playbook.done()


def test_stale_if_error_serves_the_stale_copy_within_its_window_only() -> None:
    playbook = Playbook(make_node(origin=None))
    fill(playbook, cache_control="max-age=5, stale-if-error=60")
    for request_id, now, served in ((2, T0 + 30, True), (3, T0 + 100, False)):
        playbook >> get(request_id, now=now)
        fetch = playbook.take(FetchUpstream)
        for _ in PARENTS[1:]:
            playbook >> UpstreamFailed(fetch.fetch_id, "refused", now)
            playbook.take(FetchUpstream)
        playbook >> UpstreamFailed(fetch.fetch_id, "refused", now)
        if served:
            answer = playbook.take(ServeStored)
            assert "detail=stale-if-error" in answer.delivery.headers["cache-status"]
        else:
            playbook << Expect(Respond, status=504)  # stale, unvalidated (RFC 9111 4.2.4)
    playbook.done()


def test_purge_drops_stored_objects_and_in_flight_fills() -> None:
    playbook = Playbook(make_node())
    fill(playbook)
    playbook >> PurgeRequested("/v/abc/", True, T0)
    playbook.take(DropStored)
    playbook >> get(2)
    fetch = playbook.take(FetchUpstream)
    playbook >> ok(fetch.fetch_id)
    playbook.take(StreamFetch)
    playbook >> PurgeRequested(SEGMENT, False, T0)
    playbook >> FetchCompleted(fetch.fetch_id, 10, T0)
    playbook << Expect(ReleaseFetch, fetch_id=fetch.fetch_id)  # not stored
    playbook >> get(3)
    playbook.take(FetchUpstream)
    playbook.done()


def test_404_is_cached_briefly_without_explicit_freshness() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1)
    fetch = playbook.take(FetchUpstream)
    playbook >> UpstreamResponded(fetch.fetch_id, 404, {"content-length": "3"}, T0)
    assert playbook.take(StreamFetch).deliveries[0].status == 404
    playbook >> FetchCompleted(fetch.fetch_id, 3, T0)
    playbook.take(StoreFetched)
    playbook >> get(2, now=T0 + 5)
    assert playbook.take(ServeStored).delivery.status == 404
    playbook >> get(3, now=T0 + 11)
    playbook.take(FetchUpstream)
    playbook.done()


def test_unsafe_methods_pass_with_their_body_and_invalidate() -> None:
    playbook = Playbook(make_node())
    fill(playbook)
    playbook >> RequestReceived(7, "POST", SEGMENT, {"content-type": "text/plain"}, T0)
    post = playbook << Expect(FetchUpstream, method="POST", body_of=7)
    playbook >> UpstreamResponded(post.fetch_id, 204, {}, T0)
    stream = playbook.take(StreamFetch)
    assert stream.deliveries[0].headers["cache-status"].startswith("edge-t; fwd=bypass")
    playbook.take(DropStored)
    playbook >> get(8)
    playbook.take(FetchUpstream)
    playbook.done()


def test_client_conditionals_and_ranges_on_hits() -> None:
    playbook = Playbook(make_node())
    fill(playbook, size=100)
    cases: list[tuple[Mapping[str, str], int]] = [
        ({"if-none-match": '"v1"'}, 304),
        ({"if-match": '"v2"'}, 412),
        ({"range": "bytes=10-19"}, 206),
        ({"range": "bytes=500-"}, 416),
        ({"range": "bytes=10-19", "if-range": '"old"'}, 200),
    ]
    for request_id, (headers, status) in enumerate(cases, start=2):
        playbook >> RequestReceived(request_id, "GET", SEGMENT, headers, T0)
        served = playbook.take(ServeStored)
        assert served.delivery.status == status, headers
    playbook >> RequestReceived(20, "HEAD", SEGMENT, {}, T0)
    assert playbook.take(ServeStored).delivery.with_body is False
    playbook.done()


def test_only_if_cached_miss_is_504_and_bad_paths_400() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1, cache_control="only-if-cached")
    playbook << Expect(Respond, status=504)
    playbook >> get(2, target="/v/%2e%2e/secret")
    playbook << Expect(Respond, status=400)
    playbook.done()


def test_trending_hints_prewarm_init_and_first_segments() -> None:
    playbook = Playbook(make_node(admission="viral"))
    playbook >> TrendingHinted(("abc",), T0)
    master = playbook << Expect(FetchUpstream, path="/v/abc/master.m3u8", want_body=True)
    body = b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\n360p/index.m3u8\n"
    playbook >> ok(master.fetch_id, size=len(body))
    playbook.take(StreamFetch)
    playbook >> FetchCompleted(master.fetch_id, len(body), T0, body)
    playbook.take(ReleaseFetch)
    media = playbook << Expect(FetchUpstream, path="/v/abc/360p/index.m3u8", want_body=True)
    media_body = (
        b'#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="init.mp4"\n'
        b"#EXTINF:2.0,\nseg_00000.m4s\n#EXTINF:2.0,\nseg_00001.m4s\n#EXT-X-ENDLIST\n"
    )
    playbook >> ok(media.fetch_id, size=len(media_body))
    playbook.take(StreamFetch)
    playbook >> FetchCompleted(media.fetch_id, len(media_body), T0, media_body)
    playbook.take(ReleaseFetch)
    init = playbook << Expect(FetchUpstream, path="/v/abc/360p/init.mp4", want_body=False)
    first = playbook << Expect(FetchUpstream, path="/v/abc/360p/seg_00000.m4s")
    for fetch in (init, first):
        playbook >> ok(fetch.fetch_id)
        playbook.take(StreamFetch)
        playbook >> FetchCompleted(fetch.fetch_id, 10, T0)
        playbook.take(StoreFetched)
    playbook.done()


# ---- invariants under random interleavings ------------------------------------------------------

KEYS = [f"/v/vid{i}/360p/seg_0000{i}.m4s" for i in range(4)]
_step = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(KEYS), st.sampled_from(["GET", "HEAD"])),
    # Mostly successful fills, so that stored objects (and so hits, purges, staleness) are common.
    st.tuples(
        st.just("respond"), st.integers(0, 5), st.sampled_from([200, 200, 200, 304, 404, 503])
    ),
    st.tuples(st.just("fail"), st.integers(0, 5), st.none()),
    st.tuples(st.just("complete"), st.integers(0, 5), st.none()),
    st.tuples(st.just("gone"), st.integers(0, 30), st.none()),
    st.tuples(st.just("purge"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("wait"), st.integers(1, 40), st.none()),
)


_FILL = [("request", KEYS[0], "GET"), ("respond", 0, 200), ("complete", 0, None)]


@settings(max_examples=400, deadline=None)
@example(
    steps=[*_FILL, ("purge", KEYS[0], None), ("request", KEYS[0], "GET")], sizes=[9] * 4, disk=0
)
@example(steps=[*_FILL, ("wait", 30, None), ("request", KEYS[0], "GET")], sizes=[9] * 4, disk=0)
@given(
    steps=st.lists(_step, max_size=80),
    sizes=st.lists(st.integers(1, 4000), min_size=4, max_size=4),
    disk=st.sampled_from([0, 9000]),
)
def test_invariants_hold_under_any_interleaving(
    steps: list[tuple[str, object, object]], sizes: list[int], disk: int
) -> None:
    """Stored bytes within capacity; every request answered exactly once; nothing purged served
    again; nothing served staler than its max-age allows. With or without a disk tier."""
    capacity = 6000
    node = make_node(capacity=capacity, disk_capacity=disk)
    now = T0
    size_of = dict(zip(KEYS, sizes, strict=True))
    open_requests: set[int] = set()
    answered: set[int] = set()
    fetches: dict[int, tuple[FetchUpstream, str]] = {}  # id -> (command, phase)
    stored_at: dict[str, tuple[str, float]] = {}  # object id -> (key, time stored)
    streaming_key: dict[int, str] = {}
    purged_in: dict[str, int] = {}  # key -> step of its last purge
    stored_in: dict[str, int] = {}  # object id -> step it was stored in
    step = 0
    next_request = 1

    def run(commands: list[Command]) -> None:
        for command in commands:
            match command:
                case Respond(request_id=rid) | ServeStored(delivery=Delivery(request_id=rid)):
                    answer(rid)
                    if isinstance(command, ServeStored):
                        key, when = stored_at[command.object_id]
                        # Steps, not times: a purge and a later fill may share a timestamp.
                        purged = purged_in.get(key, -1)
                        assert purged < stored_in[command.object_id], "served a purged object"
                        age = now - when
                        # max-age=20 with no stale extensions: a hit is fresh, or was just
                        # revalidated (a 304 re-stamps it, so `stored_at` is refreshed).
                        assert (
                            age <= 20
                            or command.delivery.headers["cache-status"].find("fwd=stale") >= 0
                        ), f"served {age}s old"
                case StreamFetch(fetch_id=fid, deliveries=deliveries):
                    for delivery in deliveries:
                        answer(delivery.request_id)
                    fetches[fid] = (fetches[fid][0], "streaming")
                case AttachToFetch(delivery=delivery):
                    answer(delivery.request_id)
                case FetchUpstream(fetch_id=fid):
                    fetches[fid] = (command, "sent")
                    streaming_key[fid] = command.path
                case StoreFetched(fetch_id=fid, object_id=oid):
                    stored_at[oid] = (streaming_key[fid], now)
                    stored_in[oid] = step
                    fetches.pop(fid, None)
                case ReleaseFetch(fetch_id=fid) | AbortFetch(fetch_id=fid):
                    fetches.pop(fid, None)
                case DropStored(object_ids=ids):
                    for oid in ids:
                        stored_at.pop(oid, None)
        assert node.stored_bytes <= capacity

    def answer(request_id: int) -> None:
        assert request_id not in answered, f"request {request_id} answered twice"
        answered.add(request_id)
        open_requests.discard(request_id)

    for step, (action, argument, extra) in enumerate(steps):
        if action == "request":
            open_requests.add(next_request)
            run(node.handle(RequestReceived(next_request, str(extra), str(argument), {}, now)))
            next_request += 1
        elif action == "wait":
            now += float(str(argument))
        elif action == "gone":
            if argument in open_requests:
                open_requests.discard(int(str(argument)))
                answered.add(int(str(argument)))  # its client left: it must never be answered
                run(node.handle(ClientGone(int(str(argument)), now)))
        elif action == "purge":
            purged_in[str(argument)] = step
            run(node.handle(PurgeRequested(str(argument), False, now)))
        elif fetches:
            fid = sorted(fetches)[int(str(argument)) % len(fetches)]
            command, phase = fetches[fid]
            if action == "respond" and phase == "sent":
                status = int(str(extra))
                headers = {"content-length": str(size_of.get(command.path, 5)), "etag": '"e"'}
                headers["cache-control"] = "max-age=20"
                run(node.handle(UpstreamResponded(fid, status, headers, now)))
                if status == 304 and fid not in fetches:
                    # The node re-stamped the revalidated object: freshness restarts now.
                    for oid, (key, _) in list(stored_at.items()):
                        if key == command.path:
                            stored_at[oid] = (key, now)
            elif action == "fail":
                run(node.handle(UpstreamFailed(fid, "boom", now)))
            elif action == "complete" and phase == "streaming":
                size = size_of.get(command.path, 5)
                run(node.handle(FetchCompleted(fid, size, now)))
    # Drain: every outstanding fetch fails; then no request may be left unanswered.
    for _ in range(10):
        for fid in sorted(fetches):
            if fid in fetches:
                run(node.handle(UpstreamFailed(fid, "drain", now)))
    assert open_requests == set(), f"never answered: {sorted(open_requests)}"


def test_another_variant_is_a_vary_miss() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1, accept_encoding="gzip")
    fetch = playbook.take(FetchUpstream)
    playbook >> ok(fetch.fetch_id, vary="Accept-Encoding")
    playbook.take(StreamFetch)
    playbook >> FetchCompleted(fetch.fetch_id, 10, T0)
    playbook.take(StoreFetched)
    playbook >> get(2, accept_encoding="br")
    other = playbook.take(FetchUpstream)
    playbook >> ok(other.fetch_id, vary="Accept-Encoding")
    (delivery,) = playbook.take(StreamFetch).deliveries
    assert delivery.headers["cache-status"].startswith("edge-t; fwd=vary-miss")


def test_unsafe_requests_are_retried_only_if_never_sent() -> None:
    playbook = Playbook(make_node())
    playbook >> RequestReceived(1, "PUT", SEGMENT, {}, T0)
    put = playbook.take(FetchUpstream)
    playbook >> UpstreamFailed(put.fetch_id, "connection refused", T0, request_sent=False)
    retried = playbook << Expect(FetchUpstream, fetch_id=put.fetch_id, method="PUT")
    assert retried.target != put.target
    # RFC 9110 9.2.2: once the upstream may have acted on it, a PUT is not repeated elsewhere.
    playbook >> UpstreamFailed(put.fetch_id, "reset", T0, request_sent=True)
    playbook << Expect(Respond, request_id=1, status=502)
    playbook.done()


def test_uncacheable_verdicts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_module, "MAX_PASS_ONLY_KEYS", 2)
    playbook = Playbook(make_node())
    keys = [f"/v/private{i}/360p/seg_00001.m4s" for i in range(3)]
    for request_id, key in enumerate(keys, start=1):
        playbook >> get(request_id, target=key)
        fetch = playbook.take(FetchUpstream)
        playbook >> ok(fetch.fetch_id, cache_control="private")
        playbook.take(StreamFetch)
    # The oldest verdict was shed: two requests for it coalesce again (one fetch, not two).
    playbook >> get(10, target=keys[0]) >> get(11, target=keys[0])
    playbook.take(FetchUpstream)
    playbook.done()
    # The newest verdict is still there: each request bypasses on its own.
    playbook >> get(12, target=keys[2]) >> get(13, target=keys[2])
    playbook.take(FetchUpstream)
    playbook.take(FetchUpstream)


def test_empty_objects_cannot_pile_up_without_bound() -> None:
    capacity = 4 * OBJECT_OVERHEAD_BYTES
    node = make_node(capacity=capacity)
    for i in range(50):
        target = f"/v/missing{i}/360p/seg_00001.m4s"
        (fetch,) = node.handle(get(i, target=target))
        assert isinstance(fetch, FetchUpstream)
        node.handle(UpstreamResponded(fetch.fetch_id, 404, {"content-length": "0"}, T0))
        node.handle(FetchCompleted(fetch.fetch_id, 0, T0))
        assert node.stored_bytes <= capacity
    assert 0 < node.stored_objects < 4
