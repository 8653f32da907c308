"""The hit path's shortcuts (fields derived once per stored response, preconditions skipped when
a request has none) answer exactly as the general path does."""

from core.cache.commands import (
    FetchUpstream,
    ReleaseFetch,
    ServeStored,
    StoreFetched,
    StreamFetch,
)
from core.cache.events import FetchCompleted, RequestReceived, UpstreamResponded
from core.http import caching
from tests.core.cache.test_node import SEGMENT, T0, fill, get, make_node
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
