"""The shell's cache-hit path: answered without waiting on a future, the stored bytes object sent
as it is, the node's fields on the wire in title case, the latency histogram still fed."""

import asyncio
import os
import re

from tests.edge.harness import (
    FakeClock,
    Node,
    Upstream,
    client_session,
    node_config,
    parse_metrics,
    raw_exchange,
)

SEGMENT = "/v/hits/360p/seg_00001.m4s"
BODY = os.urandom(256 * 1024)


async def test_a_hit_sends_the_stored_object_with_the_nodes_fields() -> None:
    origin = await Upstream().start()
    origin.static(
        SEGMENT,
        BODY,
        headers={"Cache-Control": "public, max-age=600", "ETag": '"s1"', "X-Origin-Note": "kept"},
    )
    node = await Node(node_config([origin.url])).start()
    try:
        async with client_session() as session:
            async with session.get(node.url + SEGMENT) as miss:
                assert await miss.read() == BODY
            (stored_id,) = node.runner.memory
            stored = node.runner.memory[stored_id]
            assert stored == BODY and type(stored) is bytes
            for _ in range(3):
                async with session.get(node.url + SEGMENT) as hit:
                    assert hit.status == 200
                    assert await hit.read() == BODY
                    assert hit.headers["Cache-Status"].startswith("edge-t; hit; ttl=")
                    assert hit.headers["X-Origin-Note"] == "kept"
                    assert hit.headers["Content-Length"] == str(len(BODY))
            async with session.get(node.url + SEGMENT, headers={"Range": "bytes=10-19"}) as part:
                assert part.status == 206 and await part.read() == BODY[10:20]
            async with session.get(node.url + "/metrics") as metrics:
                samples = parse_metrics(await metrics.text())
        # The stored object is still the very bytes object the hits were served from.
        assert node.runner.memory[stored_id] is stored
        assert samples['shoal_request_seconds_count{kind="segment"}'] == 5
        assert samples['shoal_cache_hits_total{kind="segment"}'] == 4
        assert origin.count(SEGMENT) == 1
        # On the wire: field names in title case, as before the hit path was shortened.
        raw = await raw_exchange(
            node.url, f"GET {SEGMENT} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        head = raw.split(b"\r\n\r\n", 1)[0].decode()
        assert "\r\nCache-Status: edge-t; hit; ttl=" in head
        assert '\r\nEtag: "s1"' in head  # str.title(), as the shell always wrote it
        assert "\r\nVia: 1.1 edge-t" in head
        assert raw.endswith(BODY)
    finally:
        await node.stop()
        await origin.stop()


async def test_the_viral_policy_state_is_exported() -> None:
    origin = await Upstream().start()
    origin.static(SEGMENT, BODY, headers={"Cache-Control": "max-age=600"})
    node = await Node(node_config([origin.url], admission="viral", hot_rate=0.02)).start()
    try:
        async with client_session() as session:
            for _ in range(3):
                async with session.get(node.url + SEGMENT) as response:
                    await response.read()
            async with session.get(node.url + "/metrics") as metrics:
                samples = parse_metrics(await metrics.text())
        assert samples["shoal_admission_hot_threshold"] == 0.02
        assert samples["shoal_admission_tracked_videos"] == 1
        # 3 requests with a 60 s half-life: 3 * ln 2 / 60 = 0.035 req/s, above 0.02.
        assert samples["shoal_admission_hot_videos"] == 1
        assert samples["shoal_admission_trending_videos"] == 0
    finally:
        await node.stop()


async def test_policies_without_state_export_no_admission_gauges() -> None:
    origin = await Upstream().start()
    node = await Node(node_config([origin.url], admission="always")).start()
    try:
        async with client_session() as session, session.get(node.url + "/metrics") as metrics:
            assert "shoal_admission_hot_threshold" not in await metrics.text()
    finally:
        await node.stop()


# ---- replays: a request head met before, answered without parsing or rendering again ----------

PLAYLIST = "/v/hits/360p/index.m3u8"
PLAYLIST_BODY = b"#EXTM3U\n" + b"#" * 700 + b"\n"


class KeepAliveClient:
    """One raw keep-alive connection: each request goes out in one write (as players send
    them), each response is read by its Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, url: str) -> "KeepAliveClient":
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def exchange(self, request: bytes, *, head_only: bool = False) -> tuple[str, bytes]:
        self.writer.write(request)
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode()
        length = 0 if head_only else int(re.search(r"Content-Length: (\d+)", head)[1])  # type: ignore[index]
        return head, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def without_age(head: str) -> str:
    return re.sub(r"\r\n(Age: \d+|Cache-Status: edge-t; hit; ttl=\d+)", "", head)


def field(head: str, name: str) -> str:
    match = re.search(rf"\r\n{name}: ([^\r]*)", head)
    assert match is not None, f"no {name} in {head!r}"
    return match[1]


def get(path: str, *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: edge", *extra, "", ""]).encode()


def line(request: bytes) -> bytes:
    return request.split(b"\r\n", 1)[0]


async def test_a_request_met_again_is_answered_as_the_general_path_answers_it() -> None:
    clock = FakeClock()
    origin = await Upstream(clock=clock).start()
    origin.static(PLAYLIST, PLAYLIST_BODY, headers={"Cache-Control": "max-age=600"})
    node = await Node(node_config([origin.url]), clock=clock).start()
    client = await KeepAliveClient.connect(node.url)
    try:
        await client.exchange(get(PLAYLIST))  # the miss
        general, body = await client.exchange(get(PLAYLIST))  # a hit, remembered
        assert body == PLAYLIST_BODY and line(get(PLAYLIST)) in node.listener.replays
        hits_before = node.runner.node.stats.hits["playlist"]
        replayed = [await client.exchange(get(PLAYLIST)) for _ in range(5)]
        assert {(head, body) for head, body in replayed} == {(general, PLAYLIST_BODY)}
        # Each replay is a hit to the node: counted, its recency kept.
        assert node.runner.node.stats.hits["playlist"] == hits_before + 5
        # Time moves: Age and the ttl follow, nothing else changes.
        clock.advance(7)
        head, body = await client.exchange(get(PLAYLIST))
        assert body == PLAYLIST_BODY
        assert without_age(head) == without_age(general)
        assert int(field(head, "Age")) == int(field(general, "Age")) + 7
        ttl = int(field(head, "Cache-Status").rpartition("=")[2])
        assert ttl == int(field(general, "Cache-Status").rpartition("=")[2]) - 7
        # A HEAD is its own replay: the same head, no body.
        head_request = get(PLAYLIST).replace(b"GET", b"HEAD", 1)
        for _ in range(3):
            head_only, _ = await client.exchange(head_request, head_only=True)
            assert without_age(head_only) == without_age(head)
        assert head_request in node.listener.replayed_heads
        # Other fields change nothing in a plain hit: a head with more of them is replayed.
        for n in range(3):
            request = get(PLAYLIST, "User-Agent: player/1.0", f"X-Request-Id: {n}")
            replayed_head, body = await client.exchange(request)
            assert body == PLAYLIST_BODY and without_age(replayed_head) == without_age(head)
            assert request in node.listener.replayed_heads
        assert origin.count(PLAYLIST) == 1
    finally:
        await client.close()
        await node.stop()
        await origin.stop()


async def test_a_replay_notices_expiry_purge_and_new_content() -> None:
    clock = FakeClock()
    origin = await Upstream(clock=clock).start()
    origin.static(PLAYLIST, PLAYLIST_BODY, headers={"Cache-Control": "max-age=10"})
    node = await Node(node_config([origin.url]), clock=clock).start()
    client = await KeepAliveClient.connect(node.url)
    try:
        for _ in range(3):
            await client.exchange(get(PLAYLIST))
        assert origin.count(PLAYLIST) == 1
        # Stale: the same bytes get a fetch (a revalidation), not the remembered answer.
        clock.advance(11)
        newer = PLAYLIST_BODY.replace(b"#", b"%", 3)
        origin.static(PLAYLIST, newer, headers={"Cache-Control": "max-age=10"})
        _, body = await client.exchange(get(PLAYLIST))
        assert body == newer and origin.count(PLAYLIST) == 2
        for _ in range(2):
            head, body = await client.exchange(get(PLAYLIST))
            assert body == newer and "hit" in field(head, "Cache-Status")
        # Purged: the next one goes upstream again.
        async with (
            client_session() as session,
            session.post(
                node.url + "/_shoal/purge",
                json={"path": PLAYLIST},
                headers={"Authorization": "Bearer purge-secret"},
            ) as purged,
        ):
            assert purged.status == 200
        head, body = await client.exchange(get(PLAYLIST))
        assert body == newer and origin.count(PLAYLIST) == 3
        assert "hit" not in field(head, "Cache-Status").split(";")[1]
    finally:
        await client.close()
        await node.stop()
        await origin.stop()


async def test_heads_whose_answer_differs_are_never_replayed() -> None:
    origin = await Upstream().start()
    origin.static(PLAYLIST, PLAYLIST_BODY, headers={"Cache-Control": "max-age=600", "ETag": '"p"'})
    node = await Node(node_config([origin.url])).start()
    client = await KeepAliveClient.connect(node.url)
    try:
        for _ in range(3):
            await client.exchange(get(PLAYLIST))
        assert line(get(PLAYLIST)) in node.listener.replays
        head, _ = await client.exchange(get(PLAYLIST, 'if-none-match: "p"'), head_only=True)
        assert head.startswith("HTTP/1.1 304 ")
        head, body = await client.exchange(get(PLAYLIST, "Range: bytes=0-9"))
        assert head.startswith("HTTP/1.1 206 ") and body == PLAYLIST_BODY[:10]
        head, body = await client.exchange(get(PLAYLIST, "Cache-Control: only-if-cached"))
        assert head.startswith("HTTP/1.1 200 ") and body == PLAYLIST_BODY
        # A malformed head is refused as ever, whatever its request line.
        head, _ = await client.exchange(get(PLAYLIST, "Bad Name: x"), head_only=True)
        assert head.split("\r\n")[0].endswith(" 400 Bad Request")
        assert node.listener.replayed_heads.keys() == {get(PLAYLIST)}
        closing = await KeepAliveClient.connect(node.url)
        head, body = await closing.exchange(get(PLAYLIST, "Connection: close"))
        assert "\r\nConnection: close\r\n" in head and body == PLAYLIST_BODY
        assert await closing.reader.read() == b""
        await closing.close()
    finally:
        await client.close()
        await node.stop()
        await origin.stop()


async def test_replays_keep_the_rate_limit() -> None:
    origin = await Upstream().start()
    origin.static(PLAYLIST, PLAYLIST_BODY, headers={"Cache-Control": "max-age=600", "ETag": '"p"'})
    node = await Node(node_config([origin.url], rate_limit=0.001, rate_burst=4)).start()
    client = await KeepAliveClient.connect(node.url)
    try:
        statuses = [(await client.exchange(get(PLAYLIST)))[0].split(" ")[1] for _ in range(6)]
        assert statuses == ["200"] * 4 + ["429"] * 2
        assert get(PLAYLIST) in node.listener.replayed_heads
    finally:
        await client.close()
        await node.stop()
        await origin.stop()
