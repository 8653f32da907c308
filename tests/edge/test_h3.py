"""HTTP/3: the QUIC listener serves the same cache as the TCP listener, byte for byte."""

import asyncio
import json
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent

from core.config import CacheNodeConfig
from edge.app import RUNNER, make_cache_app
from edge.h3 import start_h3

SEGMENT = "/v/abc/720p/seg_00004.m4s"
BODY = bytes(range(256)) * 4096  # 1 MiB, so the answer spans many QUIC packets


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._streams: dict[
            int, tuple[list[tuple[bytes, bytes]], bytearray, asyncio.Future[None]]
        ] = {}

    async def request(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        stream_id = self._quic.get_next_available_stream_id()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        headers: list[tuple[bytes, bytes]] = []
        body = bytearray()
        self._streams[stream_id] = (headers, body, done)
        self._http.send_headers(
            stream_id,
            [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", b"127.0.0.1"),
                (b":path", path.encode()),
            ],
            end_stream=True,
        )
        self.transmit()
        await asyncio.wait_for(done, timeout=10)
        fields = {name.decode(): value.decode() for name, value in headers}
        return int(fields.pop(":status")), fields, bytes(body)

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self._http.handle_event(event):
            if not isinstance(h3_event, HeadersReceived | DataReceived):
                continue
            headers, body, done = self._streams[h3_event.stream_id]
            if isinstance(h3_event, HeadersReceived):
                headers.extend(h3_event.headers)
            else:
                body.extend(h3_event.data)
            if h3_event.stream_ended and not done.done():
                done.set_result(None)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _origin_segment(request: web.Request) -> web.Response:
    return web.Response(
        body=BODY, headers={"Cache-Control": "max-age=3600", "Content-Type": "video/iso.segment"}
    )


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[str, int]]:
    origin_app = web.Application()
    origin_app.router.add_get(SEGMENT, _origin_segment)
    async with TestServer(origin_app, host="127.0.0.1") as origin:
        config = CacheNodeConfig(
            upstreams=[str(origin.make_url("")).rstrip("/")], admission="always"
        )
        edge_app = make_cache_app(config, tier="edge", name="edge-h3")
        async with TestServer(edge_app, host="127.0.0.1") as edge:
            port = _free_udp_port()
            server = await start_h3(edge_app[RUNNER], host="127.0.0.1", port=port)
            try:
                yield str(edge.make_url("")).rstrip("/"), port
            finally:
                server.close()


async def test_http3_serves_identical_bytes_from_the_shared_cache(nodes: tuple[str, int]) -> None:
    tcp_url, h3_port = nodes
    configuration = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN))
    configuration.verify_mode = ssl.CERT_NONE  # the listener's certificate is self-signed
    async with connect(
        "127.0.0.1", h3_port, configuration=configuration, create_protocol=H3Client
    ) as client:
        assert isinstance(client, H3Client)
        status, fields, body = await client.request("GET", SEGMENT)
        assert status == 200 and body == BODY
        assert fields["cache-status"].startswith("edge-h3; fwd=uri-miss")
        # The TCP listener finds what HTTP/3 stored: one cache, two transports.
        async with aiohttp.ClientSession() as session, session.get(tcp_url + SEGMENT) as response:
            assert await response.read() == BODY
            assert "edge-h3; hit" in response.headers["Cache-Status"]
        status, fields, body = await client.request("GET", SEGMENT)
        assert status == 200 and body == BODY and "edge-h3; hit" in fields["cache-status"]
        status, fields, body = await client.request("HEAD", SEGMENT)
        assert status == 200 and body == b"" and "content-length" not in fields
        status, _, _ = await client.request("POST", SEGMENT)
        assert status == 405


async def test_shoal_edge_advertises_and_serves_http3(tmp_path: Path) -> None:
    """`shoal edge --set edge.http3=true`: Alt-Svc on TCP names the UDP port that serves H3."""
    origin_app = web.Application()
    origin_app.router.add_get(SEGMENT, _origin_segment)
    async with TestServer(origin_app, host="127.0.0.1") as origin:
        announce = tmp_path / "edge.json"
        upstream = str(origin.make_url("")).rstrip("/")
        edge = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "deploy.cli", "edge", "--port", "0", "--upstream", upstream),
            *("--announce", str(announce), "--set", "edge.http3=true"),
            *("--set", "edge.admission=always"),
        )
        try:
            async with asyncio.timeout(30):
                while not announce.exists():
                    assert edge.returncode is None, "shoal edge exited"
                    await asyncio.sleep(0.05)
            url = json.loads(announce.read_text())["url"]
            async with aiohttp.ClientSession() as session, session.get(url + SEGMENT) as response:
                assert await response.read() == BODY
                alt_svc = response.headers["Alt-Svc"]
            port = int(alt_svc.split('h3=":')[1].split('"')[0])
            assert port == int(url.rsplit(":", 1)[1])
            configuration = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN))
            configuration.verify_mode = ssl.CERT_NONE
            async with connect(
                "127.0.0.1", port, configuration=configuration, create_protocol=H3Client
            ) as client:
                assert isinstance(client, H3Client)
                status, fields, body = await client.request("GET", SEGMENT)
            assert status == 200 and body == BODY and "hit" in fields["cache-status"]
        finally:
            edge.terminate()
            assert await edge.wait() == 0
