"""Tests of the job queue: one contract suite run against both implementations (in-process and
Redis Streams on a real redis-server), plus what only Redis can show: a consumer process killed
while holding a job, whose job another consumer then gets."""

import asyncio
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from origin.jobs import InProcessQueue, Job, JobQueue, QueueClosed, RedisStreamQueue, open_queue

# Short enough to keep the suite fast, long enough that a loaded machine does not reclaim a job
# a test is still holding on purpose.
SHORT = 0.3
LONG = 60.0

MakeQueue = Callable[..., JobQueue]


@pytest.fixture(params=["in-process", "redis"])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """None for the in-process queue, the session's Redis URL for the Redis one."""
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return None


def new_stream() -> str:
    return f"test:{secrets.token_hex(6)}"


@pytest.fixture
async def make_queue(backend_url: str | None) -> AsyncIterator[MakeQueue]:
    """Makes the test's queue (on a stream of its own, for Redis); closes it afterwards."""
    made: list[JobQueue] = []

    def make(*, reclaim_after: float = LONG, max_deliveries: int = 5) -> JobQueue:
        queue: JobQueue
        if backend_url is None:
            queue = InProcessQueue(visibility_timeout=reclaim_after, max_deliveries=max_deliveries)
        else:
            queue = RedisStreamQueue(
                backend_url,
                stream=new_stream(),
                reclaim_after=reclaim_after,
                max_deliveries=max_deliveries,
            )
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.close()


async def test_submit_claim_ack_in_order(make_queue: MakeQueue) -> None:
    queue = make_queue()
    first = await queue.submit("package", {"video": "v1", "note": "é ✓"})
    second = await queue.submit("probe", {})
    assert first != second
    job = await queue.claim("w1", wait=1.0)
    assert job == Job(first, "package", {"video": "v1", "note": "é ✓"}, 1)
    await queue.ack(job)
    job = await queue.claim("w1", wait=1.0)
    assert job == Job(second, "probe", {}, 1)
    await queue.ack(job)
    assert await queue.claim("w1", wait=0) is None
    assert await queue.dead_letters() == []


async def test_an_acked_job_is_never_delivered_again(make_queue: MakeQueue) -> None:
    queue = make_queue(reclaim_after=SHORT)
    await queue.submit("package", {"video": "v1"})
    job = await queue.claim("w1", wait=1.0)
    assert job is not None
    await queue.ack(job)
    await asyncio.sleep(SHORT * 1.5)  # past the timeout that would redeliver an unacked job
    assert await queue.claim("w2", wait=SHORT) is None


async def test_an_unacked_job_is_reclaimed_after_the_timeout(make_queue: MakeQueue) -> None:
    queue = make_queue(reclaim_after=SHORT)
    job_id = await queue.submit("package", {"video": "v1"})
    held = await queue.claim("w1", wait=1.0)
    assert held is not None and held.deliveries == 1
    started = time.monotonic()
    assert await queue.claim("w2", wait=0) is None  # still within w1's time
    again = await queue.claim("w2", wait=5.0)
    assert again == Job(job_id, "package", {"video": "v1"}, 2)
    assert SHORT * 0.8 <= time.monotonic() - started < SHORT + 2.0


async def test_release_makes_a_job_available_at_once(make_queue: MakeQueue) -> None:
    queue = make_queue(reclaim_after=LONG)
    job_id = await queue.submit("package", {"video": "v1"})
    job = await queue.claim("w1", wait=1.0)
    assert job is not None
    await queue.release(job)
    again = await queue.claim("w2", wait=0)
    assert again is not None and (again.id, again.deliveries) == (job_id, 2)


async def test_a_stale_release_does_not_take_the_job_from_its_new_holder(
    make_queue: MakeQueue,
) -> None:
    queue = make_queue(reclaim_after=SHORT)
    await queue.submit("package", {"video": "v1"})
    stale = await queue.claim("slow", wait=1.0)
    current = await queue.claim("fast", wait=5.0)  # reclaimed once `slow` overran
    assert stale is not None and current is not None and current.deliveries == 2
    await queue.release(stale)
    assert await queue.claim("third", wait=0) is None
    await queue.ack(current)


async def test_a_job_is_dead_lettered_after_max_deliveries(make_queue: MakeQueue) -> None:
    queue = make_queue(reclaim_after=LONG, max_deliveries=2)
    job_id = await queue.submit("package", {"video": "poison"})
    for delivery in (1, 2):
        job = await queue.claim("w1", wait=1.0)
        assert job is not None and (job.id, job.deliveries) == (job_id, delivery)
        await queue.release(job)
    assert await queue.claim("w1", wait=0.1) is None
    assert await queue.dead_letters() == [Job(job_id, "package", {"video": "poison"}, 2)]
    assert await queue.claim("w1", wait=0) is None  # and stays dead


async def test_a_timed_out_job_is_dead_lettered_too(make_queue: MakeQueue) -> None:
    queue = make_queue(reclaim_after=SHORT, max_deliveries=1)
    job_id = await queue.submit("package", {"video": "v1"})
    await queue.submit("package", {"video": "v2"})
    first = await queue.claim("w1", wait=1.0)
    assert first is not None and first.id == job_id
    second = await queue.claim("w1", wait=1.0)
    assert second is not None
    await queue.ack(second)
    assert await queue.claim("w2", wait=SHORT * 2) is None
    assert [job.id for job in await queue.dead_letters()] == [job_id]
    assert await queue.dead_letters(limit=1) == await queue.dead_letters()
    with pytest.raises(ValueError):
        await queue.dead_letters(limit=0)


async def test_concurrent_consumers_never_share_a_job(make_queue: MakeQueue) -> None:
    queue = make_queue(reclaim_after=LONG)
    submitted = {await queue.submit("package", {"n": str(n)}) for n in range(40)}
    held: set[str] = set()
    done: list[str] = []

    async def consume(name: str) -> None:
        while (job := await queue.claim(name, wait=0.2)) is not None:
            assert job.id not in held, f"{job.id} delivered to two consumers"
            assert job.deliveries == 1
            held.add(job.id)
            await asyncio.sleep(0.005)  # hold it while the others claim
            held.discard(job.id)
            await queue.ack(job)
            done.append(job.id)

    await asyncio.gather(*(consume(f"w{n}") for n in range(5)))
    assert sorted(done) == sorted(submitted)


async def test_claim_waits_at_most_about_wait_on_an_empty_queue(make_queue: MakeQueue) -> None:
    queue = make_queue(reclaim_after=LONG)
    started = time.monotonic()
    assert await queue.claim("w1", wait=0) is None
    assert time.monotonic() - started < 0.5
    started = time.monotonic()
    assert await queue.claim("w1", wait=SHORT) is None
    assert SHORT * 0.9 <= time.monotonic() - started < SHORT + 0.7


async def test_a_waiting_claim_gets_a_job_submitted_meanwhile(make_queue: MakeQueue) -> None:
    queue = make_queue(reclaim_after=LONG)
    waiting = asyncio.create_task(queue.claim("w1", wait=10.0))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    job_id = await queue.submit("package", {})
    job = await asyncio.wait_for(waiting, 2.0)
    assert job is not None and job.id == job_id
    assert time.monotonic() - started < 1.0


async def test_a_closed_queue_refuses_calls(make_queue: MakeQueue) -> None:
    queue = make_queue()
    await queue.close()
    with pytest.raises(QueueClosed):
        await queue.submit("package", {})
    with pytest.raises(QueueClosed):
        await queue.claim("w1", wait=0)


async def test_closing_ends_a_waiting_claim(make_queue: MakeQueue) -> None:
    queue = make_queue()
    waiting = asyncio.create_task(queue.claim("w1", wait=10.0))
    await asyncio.sleep(0.1)
    await queue.close()
    with pytest.raises(QueueClosed):
        await asyncio.wait_for(waiting, 7.0)


async def test_payloads_map_strings_to_strings(make_queue: MakeQueue) -> None:
    queue = make_queue()
    with pytest.raises(ValueError):
        await queue.submit("package", {"n": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        await queue.submit("", {})
    assert await queue.claim("w1", wait=0) is None


async def test_open_queue_picks_the_implementation_by_url() -> None:
    for url in (None, ""):
        queue = open_queue(url, reclaim_after=5.0, max_deliveries=3)
        assert isinstance(queue, InProcessQueue)
        assert (queue.visibility_timeout, queue.max_deliveries) == (5.0, 3)
        await queue.close()
    for url in ("redis://127.0.0.1:1/0", "rediss://example.com", "unix:///run/redis.sock"):
        queue = open_queue(url, reclaim_after=5.0)
        assert isinstance(queue, RedisStreamQueue) and queue.reclaim_after == 5.0
        await queue.close()  # never connected: nothing to reach
    with pytest.raises(ValueError):
        open_queue("http://127.0.0.1:6379")


_DOOMED_CONSUMER = """
import asyncio, sys
from origin.jobs import RedisStreamQueue

async def main() -> None:
    queue = RedisStreamQueue(sys.argv[1], stream=sys.argv[2], reclaim_after=float(sys.argv[3]))
    job = await queue.claim("doomed", wait=10.0)
    print(job.id if job else "none", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_killed_consumers_job_goes_to_another(redis_url: str) -> None:
    stream = new_stream()
    queue = RedisStreamQueue(redis_url, stream=stream, reclaim_after=0.5)
    try:
        job_id = await queue.submit("package", {"video": "v1"})
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _DOOMED_CONSUMER, redis_url, stream, "0.5",
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 20.0)
            assert line.decode().strip() == job_id
        finally:
            process.kill()  # SIGKILL: no chance to release or ack
            await process.wait()
        job = await queue.claim("survivor", wait=5.0)
        assert job == Job(job_id, "package", {"video": "v1"}, 2)
        await queue.ack(job)
        assert await queue.claim("survivor", wait=0.7) is None
    finally:
        await queue.close()


async def test_redis_keeps_nothing_of_acked_jobs(redis_url: str) -> None:
    queue = RedisStreamQueue(redis_url, stream=new_stream())
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        for n in range(3):
            await queue.submit("package", {"n": str(n)})
        while (job := await queue.claim("w1", wait=0)) is not None:
            await queue.ack(job)
        # Acked entries leave both the pending list and the stream: nothing grows without end.
        pending: Any = await client.xpending(queue.stream, queue.group)
        assert pending["pending"] == 0
        assert await client.xlen(queue.stream) == 0
    finally:
        await client.aclose()
        await queue.close()
