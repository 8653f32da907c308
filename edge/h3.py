"""HTTP/3 for cache nodes: an aioquic listener in front of the same `CommandRunner`.

QUIC and HTTP/3 framing are aioquic's sans-IO state machines; this module only turns an HTTP/3
request into the node's `RequestReceived` and writes the answer the node commands back on the
stream, exactly as the TCP listener does. The node cannot tell the transports apart, so caching,
coalescing and admission are shared by both. Admin routes (purge, metrics, ...) stay on TCP.

The listener uses the TCP listener's port number on UDP, so `Alt-Svc: h3=":<port>"` advertises
it. Without a configured certificate it makes a self-signed one at start (for development).
"""

import asyncio
import datetime
import ipaddress
import logging
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, QuicEvent, StreamReset
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.config import CacheNodeConfig
from core.http.caching import combine_fields
from edge.app import RUNNER
from edge.http1 import EdgeListener
from edge.limits import LISTENER
from edge.runner import Answer, CommandRunner, FetchAborted, FetchBody

log = logging.getLogger(__name__)

# Request ids of HTTP/3 requests, disjoint from the TCP listener's (which count up from 1).
MAX_REQUEST_HEADERS = 100


class H3RequestHandler(QuicConnectionProtocol):
    """One QUIC connection: its HTTP/3 requests go to the node through `runner`."""

    def __init__(self, *args: object, runner: CommandRunner, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._runner = runner
        self._http: H3Connection | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self._http = H3Connection(self._quic)
        if isinstance(event, StreamReset) and event.stream_id in self._tasks:
            self._tasks.pop(event.stream_id).cancel()  # the client gave up on this request
        if self._http is not None:
            for h3_event in self._http.handle_event(event):
                self._h3_event_received(h3_event)

    def _h3_event_received(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived) and event.stream_id not in self._tasks:
            task = asyncio.get_running_loop().create_task(
                self._answer(event.stream_id, event.headers)
            )
            self._tasks[event.stream_id] = task
            task.add_done_callback(lambda _: self._tasks.pop(event.stream_id, None))
        # Request bodies (DataReceived) are not read: GET and HEAD carry none, and other
        # methods are refused below.

    async def _answer(self, stream_id: int, raw_headers: list[tuple[bytes, bytes]]) -> None:
        pseudo = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in raw_headers
            if name[:1] == b":"
        }
        fields = combine_fields(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in raw_headers[:MAX_REQUEST_HEADERS]
            if name[:1] != b":"
        )
        method, target = pseudo.get(":method", ""), pseudo.get(":path", "")
        if method not in ("GET", "HEAD") or not target.startswith("/"):
            self._send(stream_id, 405 if target else 400, [], b"", end=True)
            return
        runner = self._runner
        request_id, answer = runner.ask(method, target, fields)
        if not isinstance(answer, Answer):
            try:
                answer = await answer
            except asyncio.CancelledError:
                runner.client_gone(request_id)
                raise
        await self._write(stream_id, answer)

    async def _write(self, stream_id: int, answer: Answer) -> None:
        delivery = answer.delivery
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in delivery.headers.items()
            # A body-less answer (HEAD) omits Content-Length, as RFC 9110 section 8.6 allows:
            # HTTP/3 stacks such as aioquic's check it against the DATA frames (RFC 9114 4.1.2).
            if delivery.with_body or name != "content-length"
        ]
        body = answer.body
        if not isinstance(body, FetchBody):
            data = b""
            content = answer.complete_body()
            if delivery.with_body and content:
                first, last = delivery.byte_range or (0, len(content) - 1)
                data = content[first : last + 1]
            self._send(stream_id, delivery.status, headers, data, end=True)
            return
        self._send(stream_id, delivery.status, headers, b"", end=not delivery.with_body)
        if not delivery.with_body:
            return
        offset, end = (0, None) if delivery.byte_range is None else delivery.byte_range
        end = None if end is None else end + 1
        try:
            while (chunk := await body.read_from(offset, end)) is not None:
                self._send_data(stream_id, chunk, end=False)
                offset += len(chunk)
        except FetchAborted:
            # The upstream failed mid-body: reset the stream so the client sees it.
            self._quic.reset_stream(stream_id, error_code=0x010C)  # H3_REQUEST_CANCELLED
            self.transmit()
            return
        self._send_data(stream_id, b"", end=True)

    def _send(
        self,
        stream_id: int,
        status: int,
        headers: list[tuple[bytes, bytes]],
        data: bytes,
        *,
        end: bool,
    ) -> None:
        assert self._http is not None
        self._http.send_headers(
            stream_id, [(b":status", str(status).encode()), *headers], end_stream=end and not data
        )
        if data:
            self._http.send_data(stream_id, data, end_stream=end)
        self.transmit()

    def _send_data(self, stream_id: int, data: bytes, *, end: bool) -> None:
        assert self._http is not None
        self._http.send_data(stream_id, data, end_stream=end)
        self.transmit()


def self_signed_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A throwaway certificate for `host` (development and tests), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal-edge")])
    now = datetime.datetime.now(datetime.UTC)
    try:
        alt_name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt_name = x509.DNSName(host)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([alt_name]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "h3-cert.pem", directory / "h3-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def start_h3(
    runner: CommandRunner,
    *,
    host: str,
    port: int,
    certificate: Path | None = None,
    private_key: Path | None = None,
) -> QuicServer:
    """Listen for HTTP/3 on UDP `host:port`; close the returned server to stop."""
    configuration = QuicConfiguration(is_client=False, alpn_protocols=list(H3_ALPN))
    if certificate is None or private_key is None:
        with tempfile.TemporaryDirectory(prefix="shoal-h3-") as scratch:
            certificate, private_key = self_signed_certificate(Path(scratch), host)
            configuration.load_cert_chain(certificate, private_key)
    else:
        configuration.load_cert_chain(certificate, private_key)

    def create_protocol(*args: object, **kwargs: object) -> H3RequestHandler:
        return H3RequestHandler(*args, runner=runner, **kwargs)

    server = await serve(host, port, configuration=configuration, create_protocol=create_protocol)
    log.info("%s: HTTP/3 on udp://%s:%d", runner.node.settings.name, host, port)
    return server


def _alt_svc(port: int) -> str:
    return f'h3=":{port}"; ma=86400'


def enable_http3(
    app: web.Application, config: CacheNodeConfig
) -> Callable[[str, int], Awaitable[Callable[[], None]]]:
    """Advertise HTTP/3 on the app's TCP responses (`Alt-Svc`) and return the function that
    starts the QUIC listener once the TCP port is bound (same port number, over UDP)."""
    bound: list[int] = []

    async def advertise(request: web.Request, response: web.StreamResponse) -> None:
        if bound:
            response.headers["Alt-Svc"] = _alt_svc(bound[0])

    app.on_response_prepare.append(advertise)

    async def start(host: str, port: int) -> Callable[[], None]:
        server = await start_h3(
            app[RUNNER],
            host=host,
            port=port,
            certificate=Path(config.tls_certificate) if config.tls_certificate else None,
            private_key=Path(config.tls_private_key) if config.tls_private_key else None,
        )
        bound.append(port)
        listener = app.get(LISTENER)
        if isinstance(listener, EdgeListener):
            listener.add_response_field("Alt-Svc", _alt_svc(port))
        return server.close

    return start
