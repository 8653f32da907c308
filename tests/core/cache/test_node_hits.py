"""The hit path's shortcuts (fields derived once per stored response, preconditions skipped when
a request has none) answer exactly as the general path does."""

from core.cache.commands import (
    FetchUpstream,
    ReleaseFetch,
    ServeStored,
    StoreFetched,
    StreamFetch,
)
from core.cache.events import FetchCompleted, PurgeRequested, RequestReceived, UpstreamResponded
from core.http import caching
from tests.core.cache.test_node import SEGMENT, T0, fill, get, make_node, ok
from tests.playbook import Playbook


def test_every_hit_gets_its_own_fields_with_its_own_age_and_ttl() -> None:
    playbook = Playbook(make_node())
    fill(playbook, size=100)
    playbook >> get(2, now=T0 + 5)
    first = playbook.take(ServeStored).delivery
    first.headers["x-mutated"] = "by a shell"  # must not leak into later deliveries
    playbook >> get(3, now=T0 + 20)
    second = playbook.take(ServeStored).delivery
    assert first.headers is not second.headers
    assert "x-mutated" not in second.headers
    assert second.headers == {
        "content-length": "100",
        "etag": '"v1"',
        "cache-control": "max-age=60",
        "age": "20",
        "cache-status": "edge-t; hit; ttl=40",
        "via": "1.1 edge-t",
    }
    playbook.done()


def test_hit_age_matches_rfc_9111_current_age() -> None:
    playbook = Playbook(make_node())
    playbook >> get(1)
    fetch = playbook.take(FetchUpstream)
    # An upstream Age and a Date in the past both count (RFC 9111 section 4.2.3).
    fields = {
        "content-length": "10",
        "cache-control": "max-age=600",
        "age": "30",
        "date": "Tue, 14 Nov 2023 22:11:40 GMT",  # T0 - 100
    }
    playbook >> UpstreamResponded(fetch.fetch_id, 200, fields, T0)
    playbook.take(StreamFetch)
    playbook >> FetchCompleted(fetch.fetch_id, 10, T0)
    playbook.take(StoreFetched)
    meta = caching.StoredResponseMeta(200, fields, T0, T0)
    for later in (0.0, 7.5, 400.0):
        playbook >> get(2, now=T0 + later)
        delivery = playbook.take(ServeStored).delivery
        age = caching.current_age_of(meta, T0 + later)
        assert delivery.headers["age"] == caching.age_header_value(age)
        assert delivery.headers["cache-status"] == f"edge-t; hit; ttl={int((600 - age) // 1)}"
    playbook.done()


def test_a_revalidation_refreshes_what_hits_derive() -> None:
    playbook = Playbook(make_node())
    fill(playbook, cache_control="max-age=5")
    playbook >> get(2, now=T0 + 1)
    assert playbook.take(ServeStored).delivery.headers["cache-control"] == "max-age=5"
    playbook >> get(3, now=T0 + 10)
    revalidation = playbook.take(FetchUpstream)
    playbook >> UpstreamResponded(
        revalidation.fetch_id, 304, {"etag": '"v1"', "cache-control": "max-age=100"}, T0 + 10
    )
    playbook.take(ReleaseFetch)
    playbook.take(ServeStored)
    playbook >> get(4, now=T0 + 30)
    delivery = playbook.take(ServeStored).delivery
    assert delivery.headers["cache-control"] == "max-age=100"
    assert delivery.headers["age"] == "20"
    assert delivery.headers["cache-status"] == "edge-t; hit; ttl=80"
    playbook.done()


def test_ranges_without_preconditions_follow_the_method() -> None:
    playbook = Playbook(make_node())
    fill(playbook, size=100)
    playbook >> RequestReceived(2, "GET", SEGMENT, {"range": "bytes=0-9"}, T0)
    assert playbook.take(ServeStored).delivery.byte_range == (0, 9)
    # RFC 9110 section 14.2: Range is for GET only; a HEAD gets the whole representation's head.
    playbook >> RequestReceived(3, "HEAD", SEGMENT, {"range": "bytes=0-9"}, T0)
    head = playbook.take(ServeStored).delivery
    assert (head.status, head.byte_range, head.with_body) == (200, None, False)
    # If-Range still decides with a Range: a validator that does not match sends it all.
    playbook >> RequestReceived(4, "GET", SEGMENT, {"range": "bytes=0-9", "if-range": '"v1"'}, T0)
    assert playbook.take(ServeStored).delivery.status == 206
    playbook >> RequestReceived(5, "GET", SEGMENT, {"range": "bytes=0-9", "if-range": '"x"'}, T0)
    assert playbook.take(ServeStored).delivery.status == 200
    playbook.done()


# ---- the plain-hit path -------------------------------------------------------------------------
# A plain request (GET or HEAD without cache directives, Range or preconditions) for a target whose
# last plain request was a fresh hit skips most of `_recv`. `max-stale=0` changes nothing for a
# fresh object but makes a request not plain: it is the general path's answer to compare with.

GENERAL = {"cache-control": "max-stale=0"}


def test_plain_hits_answer_exactly_as_the_general_path() -> None:
    plain_node, general_node = make_node(), make_node()
    plain, general = Playbook(plain_node), Playbook(general_node)
    for playbook in (plain, general):
        playbook >> get(1)
        fetch = playbook.take(FetchUpstream)
        upstream = {"via": "1.1 shield", "cache-status": "shield; fwd=uri-miss", "age": "3"}
        playbook >> UpstreamResponded(
            fetch.fetch_id, 200, {"content-length": "10", "cache-control": "max-age=60",
                                  "etag": '"v1"', **upstream}, T0,
        )  # fmt: skip
        playbook.take(StreamFetch)
        playbook >> FetchCompleted(fetch.fetch_id, 10, T0)
        playbook.take(StoreFetched)
    for request_id, (method, later) in enumerate(
        [("GET", 0.5), ("GET", 1.0), ("HEAD", 20.2), ("GET", 56.9)], start=2
    ):
        plain >> RequestReceived(request_id, method, SEGMENT, {"host": "a"}, T0 + later)
        general >> RequestReceived(
            request_id, method, SEGMENT, {"host": "a", **GENERAL}, T0 + later
        )
        expected = general.take(ServeStored).delivery
        delivered = plain.take(ServeStored).delivery
        assert delivered == expected
        assert list(delivered.headers) == list(expected.headers)  # the same order on the wire
        assert expected.headers["cache-status"].startswith("shield; fwd=uri-miss, edge-t; hit")
    assert plain_node.stats == general_node.stats
    plain.done()
    general.done()


def test_plain_hits_notice_what_changed_since_the_last_one() -> None:
    playbook = Playbook(make_node(capacity=1_000))
    fill(playbook, size=10, cache_control="max-age=60")
    for request_id in (2, 3):
        playbook >> get(request_id, now=T0 + 1)
        playbook.take(ServeStored)
    # Stale: revalidated, not served.
    playbook >> get(4, now=T0 + 61)
    revalidation = playbook.take(FetchUpstream)
    playbook >> UpstreamResponded(
        revalidation.fetch_id, 304, {"etag": '"v1"', "cache-control": "max-age=5"}, T0 + 61
    )
    playbook.take(ReleaseFetch)
    playbook.take(ServeStored)
    # The 304's new freshness applies at once: fresh until T0 + 66, then revalidated again.
    playbook >> get(5, now=T0 + 65)
    assert playbook.take(ServeStored).delivery.headers["cache-status"] == "edge-t; hit; ttl=1"
    playbook >> get(6, now=T0 + 67)
    playbook.take(FetchUpstream)
    playbook.done()


def test_a_purged_or_evicted_object_is_not_served_by_the_plain_path() -> None:
    playbook = Playbook(make_node(capacity=1_000))
    fill(playbook, size=10)
    playbook >> get(2, now=T0 + 1)
    playbook.take(ServeStored)
    playbook >> PurgeRequested(SEGMENT, False, T0 + 2)
    playbook.drain()
    playbook >> get(3, now=T0 + 3)
    playbook.take(FetchUpstream)
    playbook.drain()
    # Evicted: another object takes the whole capacity.
    playbook = Playbook(make_node(capacity=1_000))
    fill(playbook, size=10)
    playbook >> get(2, now=T0 + 1)
    playbook.take(ServeStored)
    playbook >> get(3, now=T0 + 1, target="/v/abc/360p/seg_00004.m4s")
    other = playbook.take(FetchUpstream)
    playbook >> ok(other.fetch_id, now=T0 + 1, size=600)
    playbook.take(StreamFetch)
    playbook >> FetchCompleted(other.fetch_id, 600, T0 + 1)
    playbook.drain()
    playbook >> get(4, now=T0 + 2)
    playbook.take(FetchUpstream)
    playbook.drain()
