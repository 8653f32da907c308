"""The origin's job queue: work (packaging, probing, moderation) handed from the API to workers.

At-least-once delivery with a visibility timeout: a claimed job belongs to its consumer until it
is acked; if the consumer dies or stalls, the job is delivered again (to anyone) once it has been
held for the timeout, and `release` hands it back at once. Every delivery counts; a job that
reaches `max_deliveries` deliveries without an ack is not delivered again but moved to the dead
letters, so one poisonous job cannot keep the workers busy forever. Workers must therefore be
idempotent (the catalog's state machine makes a repeated step harmless).

Two implementations of one `JobQueue` protocol, chosen by `open_queue(url)`:

- `InProcessQueue`: asyncio, in memory, for a single-process origin and for tests. Jobs die with
  the process.
- `RedisStreamQueue`: a Redis stream with one consumer group, for workers in other processes or
  machines. Jobs survive worker crashes (the pending-entries list remembers who holds what and
  for how long) and origin restarts (as far as the Redis server persists).

How the Redis queue maps onto streams, and why:
- submit is XADD (capped at `max_length` entries, approximately, as a safety valve);
- claim first reclaims, in one Lua script (atomic, so two consumers never take the same entry
  and the delivery count is exact), an entry pending longer than `reclaim_after` under ANY
  consumer: XPENDING IDLE finds them, XCLAIM with an explicit RETRYCOUNT takes one. Only then
  does it read a new entry with XREADGROUP `>`, blocking in slices of at most `reclaim_after / 2`
  (and 5 s) so that a waiting consumer also notices jobs that become reclaimable meanwhile;
- ack is XACK + XDEL: done jobs do not pile up in the stream;
- release re-assigns the entry to the pseudo-consumer "(released)" with a huge idle time, so the
  next claim reclaims it at once; a Lua script does it only if the delivery count is still the
  one the releasing consumer got, so a consumer whose job was meanwhile reclaimed by another
  cannot release that other consumer's delivery;
- dead letters are entries of the stream `<stream>:dead` (original id, kind, payload,
  deliveries), for people to inspect.
"""

import asyncio
import contextlib
import heapq
import itertools
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT


@dataclass(frozen=True)
class Job:
    """One delivery of a job: `deliveries` counts this one (1 on the first)."""

    id: str
    kind: str
    payload: Mapping[str, str]
    deliveries: int


class QueueClosed(RuntimeError):
    """The queue was closed (also raised in claims that were waiting when it was)."""


class JobQueue(Protocol):
    async def submit(self, kind: str, payload: Mapping[str, str]) -> str:
        """Enqueue a job; returns its id."""
        ...

    async def claim(self, consumer: str, *, wait: float) -> Job | None:
        """The next job for `consumer`, waiting up to `wait` seconds; None if there is none."""
        ...

    async def ack(self, job: Job) -> None:
        """The job is done: it is never delivered again."""
        ...

    async def release(self, job: Job) -> None:
        """Give the job back undone: it is available again at once (counting this delivery)."""
        ...

    async def dead_letters(self, *, limit: int = 100) -> list[Job]:
        """Jobs given up after `max_deliveries` deliveries, oldest first."""
        ...

    async def close(self) -> None: ...


def _check_job(kind: str, payload: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(kind, str) or not kind:
        raise ValueError("a job kind is a non-empty string")
    copy = dict(payload)
    for key, value in copy.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"job payloads map strings to strings: {key!r}: {value!r}")
    return copy


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, not {limit!r}")


def _check_settings(timeout: float, max_deliveries: int) -> None:
    if not timeout > 0:
        raise ValueError(f"the visibility timeout must be positive, not {timeout!r}")
    if not isinstance(max_deliveries, int) or max_deliveries < 1:
        raise ValueError(f"max_deliveries must be at least 1, not {max_deliveries!r}")


@dataclass
class _Entry:
    kind: str
    payload: Mapping[str, str]
    deliveries: int = 0
    # Loop time at which a held job becomes claimable again; None while it waits its first turn.
    due: float | None = None


class InProcessQueue:
    """The queue in this process's memory (asyncio; not thread-safe)."""

    def __init__(self, *, visibility_timeout: float = 600.0, max_deliveries: int = 5) -> None:
        _check_settings(visibility_timeout, max_deliveries)
        self.visibility_timeout = visibility_timeout
        self.max_deliveries = max_deliveries
        self._entries: dict[str, _Entry] = {}
        self._fresh: deque[str] = deque()
        # (due, tiebreak, id, deliveries) of held jobs; stale items (acked, redelivered since)
        # are skipped when popped rather than searched for and removed.
        self._held: list[tuple[float, int, str, int]] = []
        self._dead: list[Job] = []
        self._ids = itertools.count(1)
        self._order = itertools.count()
        self._changed = asyncio.Condition()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosed("the job queue is closed")

    async def submit(self, kind: str, payload: Mapping[str, str]) -> str:
        self._check_open()
        job_id = str(next(self._ids))
        self._entries[job_id] = _Entry(kind, MappingProxyType(_check_job(kind, payload)))
        self._fresh.append(job_id)
        async with self._changed:
            self._changed.notify()
        return job_id

    def _hold(self, job_id: str, entry: _Entry, now: float) -> None:
        entry.due = now + self.visibility_timeout
        heapq.heappush(self._held, (entry.due, next(self._order), job_id, entry.deliveries))

    def _take(self, now: float) -> Job | None:
        """The next claimable job, held from now on; overdue ones first, as in the Redis queue."""
        while self._held and self._held[0][0] <= now:
            due, _, job_id, deliveries = heapq.heappop(self._held)
            entry = self._entries.get(job_id)
            if entry is None or entry.deliveries != deliveries or entry.due != due:
                continue  # acked, or an item left over from an earlier delivery
            if entry.deliveries >= self.max_deliveries:
                del self._entries[job_id]
                self._dead.append(Job(job_id, entry.kind, entry.payload, entry.deliveries))
                continue
            entry.deliveries += 1
            self._hold(job_id, entry, now)
            return Job(job_id, entry.kind, entry.payload, entry.deliveries)
        while self._fresh:
            job_id = self._fresh.popleft()
            fresh = self._entries.get(job_id)
            if fresh is None:
                continue  # acked before its first delivery
            fresh.deliveries = 1
            self._hold(job_id, fresh, now)
            return Job(job_id, fresh.kind, fresh.payload, 1)
        return None

    async def claim(self, consumer: str, *, wait: float) -> Job | None:
        self._check_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait, 0.0)
        async with self._changed:
            while True:
                now = loop.time()
                job = self._take(now)
                if job is not None or now >= deadline:
                    return job
                # Sleep until something is submitted or released, a held job falls due, or
                # the wait is over, whichever comes first.
                until = min(deadline, self._held[0][0]) if self._held else deadline
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), until - now)
                self._check_open()

    async def ack(self, job: Job) -> None:
        self._check_open()
        self._entries.pop(job.id, None)

    async def release(self, job: Job) -> None:
        self._check_open()
        entry = self._entries.get(job.id)
        # Only the current delivery may be released: a consumer whose job timed out and went to
        # another consumer must not hand that other consumer's delivery back.
        if entry is None or entry.deliveries != job.deliveries:
            return
        entry.due = float("-inf")
        heapq.heappush(self._held, (entry.due, next(self._order), job.id, entry.deliveries))
        async with self._changed:
            self._changed.notify()

    async def dead_letters(self, *, limit: int = 100) -> list[Job]:
        self._check_open()
        _check_limit(limit)
        return self._dead[:limit]

    async def close(self) -> None:
        self._closed = True
        async with self._changed:
            self._changed.notify_all()


# KEYS: stream, dead stream. ARGV: group, consumer, min idle ms, max deliveries, dead max length.
# Returns {id, flat fields, deliveries} of the reclaimed entry, or nil when none is overdue.
_RECLAIM = """
local stream, dead = KEYS[1], KEYS[2]
local group, consumer, min_idle = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max_deliveries, dead_max = tonumber(ARGV[4]), ARGV[5]
local start = '-'
while true do
  local pending = redis.call('XPENDING', stream, group, 'IDLE', min_idle, start, '+', 50)
  if #pending == 0 then return nil end
  for _, item in ipairs(pending) do
    local id, deliveries = item[1], tonumber(item[4])
    if deliveries >= max_deliveries then
      local entry = redis.call('XRANGE', stream, id, id)
      if #entry > 0 then
        local fields = entry[1][2]
        fields[#fields + 1] = 'id'
        fields[#fields + 1] = id
        fields[#fields + 1] = 'deliveries'
        fields[#fields + 1] = tostring(deliveries)
        redis.call('XADD', dead, 'MAXLEN', '~', dead_max, '*', unpack(fields))
      end
      redis.call('XACK', stream, group, id)
      redis.call('XDEL', stream, id)
    else
      local claimed = redis.call('XCLAIM', stream, group, consumer, min_idle, id,
                                 'RETRYCOUNT', deliveries + 1)
      if #claimed > 0 and claimed[1] then
        return {id, claimed[1][2], deliveries + 1}
      end
      -- The entry was deleted (trimmed) while pending: nothing to deliver, forget it.
      redis.call('XACK', stream, group, id)
    end
  end
  start = '(' .. pending[#pending][1]
end
"""

# KEYS: stream. ARGV: group, id, deliveries, idle ms. Returns 1 if released, 0 if not held.
_RELEASE = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 or tonumber(pending[1][4]) ~= tonumber(ARGV[3]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], '(released)', 0, ARGV[2],
           'IDLE', ARGV[4], 'RETRYCOUNT', ARGV[3], 'JUSTID')
return 1
"""

# Idle time given to released entries: longer than any sensible reclaim_after, yet shorter than
# the Unix time in ms (Redis turns a last-delivery time before the epoch into "now").
_RELEASED_IDLE_MS = 10 * 365 * 24 * 3600 * 1000
_MAX_BLOCK = 5.0


class RedisStreamQueue:
    """The queue as a Redis stream with one consumer group (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        stream: str = "shoal:jobs",
        group: str = "workers",
        reclaim_after: float = 600.0,
        max_deliveries: int = 5,
        max_length: int = 1_000_000,
    ) -> None:
        _check_settings(reclaim_after, max_deliveries)
        if reclaim_after * 1000 >= _RELEASED_IDLE_MS:
            raise ValueError("reclaim_after must be shorter than ten years")
        self.stream = stream
        self.dead_stream = f"{stream}:dead"
        self.group = group
        self.reclaim_after = reclaim_after
        self.max_deliveries = max_deliveries
        self.max_length = max_length
        # Connections are made on first use: constructing the queue does no I/O.
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._reclaim = self._redis.register_script(_RECLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._group_ready = False
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosed("the job queue is closed")

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From id 0: jobs submitted before any worker started are delivered too.
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    async def submit(self, kind: str, payload: Mapping[str, str]) -> str:
        self._check_open()
        fields: dict[FieldT, EncodableT] = {
            "kind": kind,
            "payload": json.dumps(_check_job(kind, payload)),
        }
        job_id = await self._redis.xadd(
            self.stream, fields, maxlen=self.max_length, approximate=True
        )
        return str(job_id)

    async def claim(self, consumer: str, *, wait: float) -> Job | None:
        self._check_open()
        try:
            return await self._claim(consumer, wait)
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            # The stream (and its group) was deleted behind our back: recreate and go on.
            self._group_ready = False
            return await self._claim(consumer, wait)
        except RedisConnectionError:
            if self._closed:
                raise QueueClosed("the job queue was closed during a claim") from None
            raise

    async def _claim(self, consumer: str, wait: float) -> Job | None:
        await self._ensure_group()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait, 0.0)
        slice_ = min(self.reclaim_after / 2, _MAX_BLOCK)
        while True:
            reclaimed = await self._reclaim(
                keys=[self.stream, self.dead_stream],
                args=[
                    self.group,
                    consumer,
                    int(self.reclaim_after * 1000),
                    self.max_deliveries,
                    self.max_length,
                ],
            )
            if reclaimed:
                entry_id, flat, deliveries = reclaimed
                return self._job(
                    entry_id, dict(zip(flat[::2], flat[1::2], strict=True)), int(deliveries)
                )
            remaining = deadline - loop.time()
            block = min(remaining, slice_)
            # Any: redis-py types replies for every decoding mode at once.
            answer: Any = await self._redis.xreadgroup(
                self.group,
                consumer,
                {self.stream: ">"},
                count=1,
                # BLOCK 0 would wait forever: with no time left, just look.
                block=max(1, int(block * 1000)) if block > 0 else None,
            )
            if answer:
                [[_, [(entry_id, fields)]]] = answer
                return self._job(entry_id, fields, 1)
            self._check_open()
            if loop.time() >= deadline:
                return None

    @staticmethod
    def _job(entry_id: str, fields: Mapping[str, str], deliveries: int) -> Job:
        payload = MappingProxyType(json.loads(fields["payload"]))
        return Job(entry_id, fields["kind"], payload, deliveries)

    async def ack(self, job: Job) -> None:
        self._check_open()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, job.id)
            pipe.xdel(self.stream, job.id)
            await pipe.execute()

    async def release(self, job: Job) -> None:
        self._check_open()
        await self._ensure_group()
        await self._release(
            keys=[self.stream],
            args=[self.group, job.id, job.deliveries, _RELEASED_IDLE_MS],
        )

    async def dead_letters(self, *, limit: int = 100) -> list[Job]:
        self._check_open()
        _check_limit(limit)
        entries: Any = await self._redis.xrange(self.dead_stream, count=limit)
        return [
            Job(
                fields["id"],
                fields["kind"],
                MappingProxyType(json.loads(fields["payload"])),
                int(fields["deliveries"]),
            )
            for _, fields in entries
        ]

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._redis.aclose()


_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


def open_queue(
    url: str | None, *, reclaim_after: float = 600.0, max_deliveries: int = 5
) -> JobQueue:
    """The queue a configuration names: none (None or "") is in-process, a Redis URL is Redis."""
    if not url:
        return InProcessQueue(visibility_timeout=reclaim_after, max_deliveries=max_deliveries)
    if urlsplit(url).scheme in _REDIS_SCHEMES:
        return RedisStreamQueue(url, reclaim_after=reclaim_after, max_deliveries=max_deliveries)
    raise ValueError(f"unsupported job queue URL {url!r}: use redis://, rediss:// or unix://")
