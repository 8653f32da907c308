"""CacheNode with signed URLs: 403 for missing, expired, forged or malformed tokens; the token is
no part of the cache key; upstream fetches carry a token of the node's own."""

from urllib.parse import urlencode

import pytest

from core.cache.admission import AdmissionSettings, create_admission_policy
from core.cache.commands import (
    AttachToFetch,
    FetchUpstream,
    ReleaseFetch,
    Respond,
    ServeStored,
    StoreFetched,
    StreamFetch,
)
from core.cache.events import FetchCompleted, RequestReceived, TrendingHinted, UpstreamResponded
from core.cache.eviction import create_eviction_policy
from core.cache.index import CacheIndex
from core.cache.node import UPSTREAM_TOKEN_TTL, CacheNode, NodeSettings
from core.cache.routing import ParentRouter
from core.http.signing import Verdict, sign, strip_token, verify_target
from tests.playbook import Expect, Playbook

T0 = 1_700_000_000.0
SEGMENT = "/v/abc/360p/seg_00003.m4s"
PARENTS = ("http://r1",)
NEW, OLD = "key-new", "key-old"


def make_node(
    keys: tuple[str, ...] = (NEW, OLD), require: bool = True, admission: str = "always"
) -> CacheNode:
    return CacheNode(
        NodeSettings(
            name="edge-t",
            tier="edge",
            parents=PARENTS,
            origin=None,
            signing_keys=keys,
            require_signed=require,
        ),
        index=CacheIndex(10_000, create_eviction_policy("lru", capacity_bytes=10_000)),
        admission=create_admission_policy(admission, AdmissionSettings()),
        router=ParentRouter(PARENTS, None),
    )


def signed(
    target: str, *, expires: float = T0 + 3600, key: str = NEW, prefix: str = "/v/abc/"
) -> str:
    token = urlencode(sign(prefix, int(expires), key))
    return f"{target}&{token}" if "?" in target else f"{target}?{token}"


def get(request_id: int, target: str, now: float = T0, method: str = "GET") -> RequestReceived:
    return RequestReceived(request_id, method, target, {}, now)


def ok(fetch_id: int, size: int = 10) -> UpstreamResponded:
    fields = {"content-length": str(size), "etag": '"v1"', "cache-control": "max-age=60"}
    return UpstreamResponded(fetch_id, 200, fields, T0)


def refused(playbook: Playbook, event: RequestReceived, verdict: Verdict) -> None:
    playbook >> event
    response: Respond = playbook << Expect(Respond, request_id=event.request_id, status=403)
    assert response.body.decode().strip() == verdict.message
    assert verdict.value in response.body.decode() or verdict is Verdict.MISSING
    playbook.done()


def test_settings_refuse_require_signed_without_keys() -> None:
    with pytest.raises(ValueError, match="signing key"):
        NodeSettings(name="e", tier="edge", parents=PARENTS, require_signed=True)
    with pytest.raises(ValueError, match="empty"):
        NodeSettings(name="e", tier="edge", parents=PARENTS, signing_keys=("",))


def test_unsigned_media_requests_get_403_missing() -> None:
    playbook = Playbook(make_node())
    refused(playbook, get(1, SEGMENT), Verdict.MISSING)
    refused(playbook, get(2, "/v/abc/master.m3u8?player=1"), Verdict.MISSING)
    refused(playbook, get(3, SEGMENT, method="HEAD"), Verdict.MISSING)


def test_expired_forged_and_malformed_tokens_get_403_saying_which() -> None:
    playbook = Playbook(make_node())
    refused(playbook, get(1, signed(SEGMENT, expires=T0)), Verdict.EXPIRED)
    refused(playbook, get(2, signed(SEGMENT, key="not-a-key")), Verdict.FORGED)
    refused(playbook, get(3, signed(SEGMENT, prefix="/v/other/")), Verdict.FORGED)
    tampered = signed(SEGMENT).replace(f"exp={int(T0 + 3600)}", f"exp={int(T0 + 7200)}")
    refused(playbook, get(4, tampered), Verdict.FORGED)
    refused(playbook, get(5, signed(SEGMENT) + f"&exp={int(T0 + 3600)}"), Verdict.MALFORMED)
    refused(playbook, get(6, f"{SEGMENT}?exp=1&sig=x"), Verdict.MALFORMED)
    assert playbook.node.stats.upstream_fetches == 0  # type: ignore[attr-defined]


def test_unsafe_paths_and_refused_methods_are_answered_first() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1, "/v/abc/../x/seg.m4s")
    playbook << Expect(Respond, status=400)
    playbook >> get(2, SEGMENT, method="TRACE")
    playbook << Expect(Respond, status=405)
    playbook.done()


def test_paths_outside_v_need_no_token() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1, "/favicon.ico")
    fetch = playbook << Expect(FetchUpstream, path="/favicon.ico")
    assert fetch.fetch_id == 1
    playbook.done()


def test_old_and_new_keys_both_verify_during_a_rotation() -> None:
    playbook = Playbook(make_node(keys=(NEW, OLD)))
    playbook >> get(1, signed(SEGMENT, key=OLD))
    playbook.take(FetchUpstream)
    playbook >> get(2, signed(SEGMENT, key=NEW))
    playbook.done()  # joined the fetch in flight
    # The old key retired: its tokens are forged.
    refused(Playbook(make_node(keys=(NEW,))), get(3, signed(SEGMENT, key=OLD)), Verdict.FORGED)


def test_viewers_with_different_tokens_share_one_fetch_and_one_entry() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1, signed(SEGMENT, expires=T0 + 100))
    fetch: FetchUpstream = playbook.take(FetchUpstream)
    # Another viewer, another token, another player parameter order: coalesced on the same key.
    playbook >> get(2, signed(SEGMENT, expires=T0 + 200, key=OLD))
    playbook.done()
    playbook >> ok(fetch.fetch_id)
    stream: StreamFetch = playbook.take(StreamFetch)
    assert [d.request_id for d in stream.deliveries] == [1, 2]
    playbook >> FetchCompleted(fetch.fetch_id, 10, T0)
    stored: StoreFetched = playbook.take(StoreFetched)
    assert stored.object_id.endswith(":" + SEGMENT)  # the key has no token
    # A third viewer with yet another token: a hit on the same entry.
    playbook >> get(3, signed(SEGMENT, expires=T0 + 300), now=T0 + 1)
    hit = playbook << Expect(ServeStored, object_id=stored.object_id)
    assert hit.delivery.status == 200
    playbook.done()
    assert playbook.node.stats.upstream_fetches == 1  # type: ignore[attr-defined]


def test_other_query_parameters_stay_in_the_key() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1, signed(SEGMENT + "?v=1"))
    first = playbook << Expect(FetchUpstream, path=lambda p: strip_token(p) == SEGMENT + "?v=1")
    playbook >> get(2, signed(SEGMENT + "?v=2"))
    second = playbook << Expect(FetchUpstream, path=lambda p: strip_token(p) == SEGMENT + "?v=2")
    assert first.fetch_id != second.fetch_id


def test_a_join_after_the_response_started_attaches_to_the_stream() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1, signed(SEGMENT))
    fetch: FetchUpstream = playbook.take(FetchUpstream)
    playbook >> ok(fetch.fetch_id)
    playbook.take(StreamFetch)
    playbook >> get(2, signed(SEGMENT, key=OLD))
    playbook << Expect(AttachToFetch, fetch_id=fetch.fetch_id)
    playbook.done()


def test_upstream_fetches_carry_a_fresh_token_of_the_node_for_the_directory() -> None:
    """Not the viewer's token: the fetch is shared, and the viewer's may expire first."""
    playbook = Playbook(make_node())
    viewer = signed(SEGMENT, expires=T0 + 5)
    playbook >> get(1, viewer)
    fetch: FetchUpstream = playbook.take(FetchUpstream)
    assert fetch.path != viewer
    assert strip_token(fetch.path) == SEGMENT
    assert "pfx=/v/abc/360p/&" in fetch.path
    assert f"exp={int(T0) + UPSTREAM_TOKEN_TTL}&" in fetch.path
    # The next tier (same keys, verifying) accepts it; with the old key only, it would not.
    assert verify_target(fetch.path, T0 + UPSTREAM_TOKEN_TTL - 1, [NEW]) is Verdict.OK
    assert verify_target(fetch.path, T0, [OLD]) is Verdict.FORGED


def test_a_node_with_keys_but_not_requiring_tokens_serves_unsigned_requests() -> None:
    playbook = Playbook(make_node(require=False))
    playbook >> get(1, SEGMENT)
    fetch: FetchUpstream = playbook.take(FetchUpstream)
    assert strip_token(fetch.path) == SEGMENT and fetch.path != SEGMENT  # still signs upstream
    playbook >> get(2, signed(SEGMENT))
    playbook.done()  # the token is no part of the key: joined


def test_a_node_without_keys_keeps_the_whole_target_as_before() -> None:
    playbook = Playbook(make_node(keys=(), require=False))
    target = signed(SEGMENT)
    playbook >> get(1, target)
    playbook << Expect(FetchUpstream, path=target)
    playbook.done()


def test_prewarm_from_a_signed_playlist_stores_under_keys_without_tokens() -> None:
    playbook = Playbook(make_node(admission="viral"))
    playbook >> TrendingHinted(("abc",), T0)
    master = playbook << Expect(
        FetchUpstream, path=lambda p: strip_token(p) == "/v/abc/master.m3u8"
    )
    body = (
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\n" + signed("360p/index.m3u8") + "\n"
    ).encode()
    playbook >> ok(master.fetch_id, size=len(body))
    playbook.take(StreamFetch)
    playbook >> FetchCompleted(master.fetch_id, len(body), T0, body)
    playbook.take(ReleaseFetch)
    media: FetchUpstream = playbook.take(FetchUpstream)
    assert strip_token(media.path) == "/v/abc/360p/index.m3u8"
    assert verify_target(media.path, T0, [NEW]) is Verdict.OK
    # A viewer's signed request for it joins the pre-warm fetch.
    playbook >> get(1, signed("/v/abc/360p/index.m3u8"))
    playbook.done()
