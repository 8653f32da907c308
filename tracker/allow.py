"""Allow-list mode: only info_hashes the origin registered may have a swarm.

The origin answers `GET {origin_url}/api/swarms?info_hash=<percent-encoded>` with 200 and
`{"info_hash", "video", "rendition"}` for a registered hash, 404 otherwise. Answers are cached
(`allow_ttl` for yes, `deny_ttl` for no, at most `MAX_ENTRIES` hashes), concurrent questions
about one hash share one request, and an announce waits at most `allow_timeout` for it. An
origin that fails to answer (timeout, error, any other status) means "no", uncached: the next
announce asks again.
"""

import asyncio
import logging
import time
from collections import OrderedDict

import aiohttp

log = logging.getLogger(__name__)

MAX_ENTRIES = 100_000
"""Cached verdicts; past it the oldest is forgotten."""


class AllowList:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        origin_url: str,
        *,
        allow_ttl: float,
        deny_ttl: float,
        timeout: float,
    ) -> None:
        self._session = session
        self._url = origin_url.rstrip("/") + "/api/swarms"
        self._allow_ttl, self._deny_ttl = allow_ttl, deny_ttl
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._verdicts: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self._pending: dict[str, asyncio.Task[bool | None]] = {}
        self.lookups = 0
        """Requests made to the origin (for tests and metrics)."""

    async def allowed(self, info_hash: str) -> bool:
        cached = self._verdicts.get(info_hash)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        task = self._pending.get(info_hash)
        if task is None:
            task = asyncio.ensure_future(self._ask(info_hash))
            self._pending[info_hash] = task
            task.add_done_callback(lambda _: self._pending.pop(info_hash, None))
        # Shielded: one waiter's connection closing must not cancel the others' lookup.
        verdict = await asyncio.shield(task)
        return bool(verdict)

    async def _ask(self, info_hash: str) -> bool | None:
        self.lookups += 1
        try:
            async with self._session.get(
                self._url, params={"info_hash": info_hash}, timeout=self._timeout
            ) as response:
                if response.status == 200:
                    body = await response.json()
                    verdict = isinstance(body, dict) and body.get("info_hash") == info_hash
                elif response.status == 404:
                    verdict = False
                else:
                    log.warning("allow-list: origin answered %d", response.status)
                    return None
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("allow-list: origin lookup failed: %r", error)
            return None
        ttl = self._allow_ttl if verdict else self._deny_ttl
        self._verdicts[info_hash] = (verdict, time.monotonic() + ttl)
        self._verdicts.move_to_end(info_hash)
        if len(self._verdicts) > MAX_ENTRIES:
            self._verdicts.popitem(last=False)
        return verdict
