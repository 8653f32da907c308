"""The shell's cache-hit path: answered without waiting on a future, the stored bytes object sent
as it is, the node's fields on the wire in title case, the latency histogram still fed."""

import os

from tests.edge.harness import (
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
