"""The disk tier in the brain: memory evictions are demoted, disk hits promoted, and a restarted
node knows its disk records again."""

from core.cache.admission import AdmissionSettings, create_admission_policy
from core.cache.commands import (
    Demote,
    DropStored,
    FetchUpstream,
    Promote,
    ServeStored,
    StoreFetched,
    StreamFetch,
)
from core.cache.events import (
    FetchCompleted,
    PurgeRequested,
    RequestReceived,
    ShuttingDown,
    StoredObjectFound,
    StoredObjectLost,
    UpstreamResponded,
)
from core.cache.eviction import create_eviction_policy
from core.cache.index import CacheIndex
from core.cache.node import OBJECT_OVERHEAD_BYTES, CacheNode, NodeSettings
from core.cache.routing import ParentRouter
from tests.playbook import Expect, Playbook

T0 = 1_700_000_000.0
SIZE = 1000
# Headers of the responses below, as charged to the capacity with the per-object overhead.
CHARGE = SIZE + OBJECT_OVERHEAD_BYTES + len('content-length1000etag"e"cache-controlmax-age=600')


def make_node(
    memory_objects: int, disk_objects: int, prefix: str = "a", promote_hits: int = 1
) -> CacheNode:
    def index(objects: int) -> CacheIndex:
        capacity = objects * CHARGE
        return CacheIndex(capacity, create_eviction_policy("lru", capacity_bytes=capacity))

    return CacheNode(
        NodeSettings(
            name="edge-d",
            tier="edge",
            parents=("http://r",),
            object_id_prefix=prefix,
            disk_promote_hits=promote_hits,
        ),
        index=index(memory_objects),
        disk_index=index(disk_objects) if disk_objects else None,
        admission=create_admission_policy("always", AdmissionSettings()),
        router=ParentRouter(["http://r"], None),
    )


def path(n: int) -> str:
    return f"/v/vid{n}/360p/seg_00001.m4s"


def fill(playbook: Playbook, request_id: int, n: int) -> str:
    playbook >> RequestReceived(request_id, "GET", path(n), {}, T0)
    fetch = playbook.take(FetchUpstream)
    headers = {"content-length": str(SIZE), "etag": '"e"', "cache-control": "max-age=600"}
    playbook >> UpstreamResponded(fetch.fetch_id, 200, headers, T0)
    playbook.take(StreamFetch)
    playbook >> FetchCompleted(fetch.fetch_id, SIZE, T0)
    stored: StoreFetched = playbook.take(StoreFetched)
    return stored.object_id


def test_memory_evictions_are_demoted_and_disk_hits_promoted() -> None:
    playbook = Playbook(make_node(memory_objects=2, disk_objects=2))
    first = fill(playbook, 1, 1)
    assert first.startswith("a")  # the prefix keeps ids unique across restarts
    fill(playbook, 2, 2)
    playbook.done()
    third = fill(playbook, 3, 3)
    demoted = playbook << Expect(Demote, object_id=first)
    assert demoted.record["key"] == path(1) and demoted.record["size"] == SIZE
    playbook.done()
    # A disk hit is served, then promoted; the memory victim (object 2) goes down to disk.
    playbook >> RequestReceived(4, "GET", path(1), {}, T0 + 1)
    playbook << Expect(ServeStored, object_id=first)
    playbook << Expect(Promote, object_id=first)
    second_demoted = playbook.take(Demote)
    assert second_demoted.record["key"] == path(2)
    playbook.done()
    assert third  # object 3 stayed in memory
    playbook >> RequestReceived(5, "GET", path(3), {}, T0 + 2)
    playbook << Expect(ServeStored, object_id=third)
    playbook.done()


def test_a_full_disk_drops_its_least_recently_used() -> None:
    playbook = Playbook(make_node(memory_objects=1, disk_objects=1))
    first = fill(playbook, 1, 1)
    fill(playbook, 2, 2)
    playbook << Expect(Demote, object_id=first)
    fill(playbook, 3, 3)
    playbook.take(Demote)
    playbook << Expect(DropStored, object_ids=(first,))
    playbook >> RequestReceived(4, "GET", path(1), {}, T0)
    playbook.take(FetchUpstream)  # gone from both tiers


def test_disk_hits_before_the_promoting_one_are_served_from_disk() -> None:
    playbook = Playbook(make_node(memory_objects=1, disk_objects=2, promote_hits=3))
    first = fill(playbook, 1, 1)
    fill(playbook, 2, 2)
    playbook << Expect(Demote, object_id=first)
    playbook.done()
    for request_id in (3, 4):  # served from disk; memory (object 2) untouched
        playbook >> RequestReceived(request_id, "GET", path(1), {}, T0 + request_id)
        playbook << Expect(ServeStored, object_id=first)
        playbook.done()
    playbook >> RequestReceived(5, "GET", path(1), {}, T0 + 5)
    playbook << Expect(ServeStored, object_id=first)
    playbook << Expect(Promote, object_id=first)
    assert playbook.take(Demote).record["key"] == path(2)
    playbook.done()
    # Demoted again, it starts counting afresh.
    fill(playbook, 3, 6)
    playbook << Expect(Demote, object_id=first)
    playbook.done()
    playbook >> RequestReceived(7, "GET", path(1), {}, T0 + 7)
    playbook << Expect(ServeStored, object_id=first)
    playbook.done()


def test_a_restarted_node_knows_its_disk_records() -> None:
    before = Playbook(make_node(memory_objects=1, disk_objects=4))
    first = fill(before, 1, 1)
    fill(before, 2, 2)
    record = before.take(Demote).record
    after = Playbook(make_node(memory_objects=1, disk_objects=4, prefix="b"))
    after >> StoredObjectFound(first, record, T0 + 5)
    after.done()
    after >> RequestReceived(1, "GET", path(1), {}, T0 + 10)
    hit = after << Expect(ServeStored, object_id=first)
    assert hit.delivery.headers["age"] == "10"  # freshness survives the restart
    after << Expect(Promote, object_id=first)
    after.done()
    # New objects of the restarted node cannot collide with the restored ones.
    assert fill(after, 2, 3).startswith("b")


def test_lost_and_malformed_records_are_forgotten() -> None:
    playbook = Playbook(make_node(memory_objects=1, disk_objects=4))
    first = fill(playbook, 1, 1)
    fill(playbook, 2, 2)
    playbook.take(Demote)
    playbook >> StoredObjectLost(first, T0)
    playbook >> RequestReceived(3, "GET", path(1), {}, T0)
    playbook.take(FetchUpstream)
    playbook >> StoredObjectFound("x1:/v/a/b.m4s", {"key": "/v/a/b.m4s"}, T0)
    playbook << Expect(DropStored, object_ids=("x1:/v/a/b.m4s",))
    bad_key = {"key": "/v/../etc", "size": 1, "status": 200, "headers": {},
               "request_time": T0, "response_time": T0, "secondary_key": [],
               "lifetime_floor": None}  # fmt: skip
    playbook >> StoredObjectFound("x2:/v/../etc", bad_key, T0)
    playbook << Expect(DropStored, object_ids=("x2:/v/../etc",))


def test_purge_reaches_the_disk_tier() -> None:
    playbook = Playbook(make_node(memory_objects=1, disk_objects=4))
    first = fill(playbook, 1, 1)
    fill(playbook, 2, 2)
    playbook.take(Demote)
    playbook >> PurgeRequested(path(1), False, T0)
    playbook << Expect(DropStored, object_ids=(first,))
    playbook >> RequestReceived(3, "GET", path(1), {}, T0)
    playbook.take(FetchUpstream)


def test_shutting_down_demotes_what_memory_holds() -> None:
    playbook = Playbook(make_node(memory_objects=2, disk_objects=4))
    first, second = fill(playbook, 1, 1), fill(playbook, 2, 2)
    playbook >> ShuttingDown(T0)
    demoted = {playbook.take(Demote).object_id, playbook.take(Demote).object_id}
    assert demoted == {first, second}
    playbook.done()
    without_disk = Playbook(make_node(memory_objects=2, disk_objects=0))
    fill(without_disk, 1, 1)
    without_disk >> ShuttingDown(T0)
    without_disk.done()
