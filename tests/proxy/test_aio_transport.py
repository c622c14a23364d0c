"""The async transport against real loopback upstreams, on asyncio and on uvloop.

It must behave as the sync transport does (tests/proxy/test_faults.py, test_deadlines.py): the
same keep-alive pool, the same failure for each row of ``failures.py``'s table, the same deadlines.
What only the event loop has is checked here too: flow control both ways, a pool that never hands
one loop's connection to another, and cancellation that never leaves a connection half-read.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from django_gateway.exceptions import (
    BadGateway,
    GatewayTimeout,
    UpstreamConnectError,
    UpstreamConnectTimeout,
)
from django_gateway.proxy import pool as sync_pool
from django_gateway.proxy.aio_body import AsyncRequestBody
from django_gateway.proxy.aio_pool import HIGH_WATER, AsyncConnection, AsyncConnectionPool
from django_gateway.proxy.aio_transport import AsyncTransport, AsyncUpstreamResponse
from django_gateway.proxy.failures import NoResponse, ResponseCut
from django_gateway.proxy.pool import Endpoint
from django_gateway.proxy.transport import Timeouts, UpstreamRequest
from django_gateway.testing.upstreams import (
    EchoUpstream,
    GarbageUpstream,
    LoopbackServer,
    Reply,
    ResetUpstream,
    SlowUpstream,
    TruncatedUpstream,
    json_reply,
    pattern_bytes,
    stream_bytes,
    unused_port,
)

KiB, MiB = 1024, 1024 * 1024
TIMEOUTS = Timeouts(connect=2, read=2, total=5)
#: Slack on every time bound (loaded CI machines are slow); bounds only tell a deadline that
#: holds from one that does not.
SLACK = 1.5

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture
def transport() -> AsyncTransport:
    return AsyncTransport(AsyncConnectionPool())


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest, transport: AsyncTransport) -> Run:
    """Runs a coroutine on a new loop of the kind under test, closing pooled connections after."""
    factory = None
    if request.param == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop

    async def closing_pool(coroutine: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await coroutine
        finally:
            transport.pool.clear()

    def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(closing_pool(coroutine))

    return run


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[AsyncConnection]:
    """Every connection the pool opens, in order."""
    connections: list[AsyncConnection] = []
    made = AsyncConnection.connection_made

    def record(self: AsyncConnection, transport: asyncio.BaseTransport) -> None:
        made(self, transport)
        connections.append(self)

    monkeypatch.setattr(AsyncConnection, "connection_made", record)
    return connections


def endpoint(upstream: Any, scheme: str = "http", **options: Any) -> Endpoint:
    return Endpoint(scheme, upstream.host, upstream.port, **options)


def request(
    method: str = "GET", body: AsyncRequestBody | None = None
) -> UpstreamRequest[AsyncRequestBody]:
    return UpstreamRequest(method, "/x?y=1", [("Host", "upstream.test")], body)


def body_of(pieces: list[bytes], length: int | None) -> AsyncRequestBody:
    messages = iter([*pieces[:-1], None])

    async def receive() -> dict[str, Any]:
        piece = next(messages, None)
        last = piece is None
        return {
            "type": "http.request",
            "body": pieces[-1] if last else piece,
            "more_body": not last,
        }

    return AsyncRequestBody(receive, length, None)


async def read_all(response: AsyncUpstreamResponse) -> bytes:
    return b"".join([chunk async for chunk in response])


async def fetch(transport: AsyncTransport, upstream: Any) -> tuple[AsyncUpstreamResponse, bytes]:
    response = await transport.send(endpoint(upstream), request(), TIMEOUTS)
    return response, await read_all(response)


# -- keep-alive and framing ----------------------------------------------------------------------


def test_sequential_requests_share_one_connection(run: Run, transport: AsyncTransport) -> None:
    async def main() -> list[bool]:
        complete = []
        for _ in range(5):
            response, body = await fetch(transport, upstream)
            assert response.status == 200 and b'"target": "/x?y=1"' in body
            complete.append(response.complete)
        return complete

    with EchoUpstream() as upstream:
        assert run(main()) == [True] * 5  # a small body arrives with the head
        assert upstream.connections_accepted == 1
        assert {r.connection_id for r in upstream.requests} == {1}


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(stream_bytes(300 * KiB, chunked=False), id="content-length"),
        pytest.param(stream_bytes(300 * KiB, chunked=True), id="chunked"),
        pytest.param(Reply(body=[pattern_bytes(300 * KiB)], chunked=False), id="until-eof"),
    ],
)
def test_streamed_bodies_arrive_whole(run: Run, transport: AsyncTransport, reply: Reply) -> None:
    with EchoUpstream(reply) as upstream:
        response, body = run(fetch(transport, upstream))
    assert (response.status, response.complete) == (200, True)
    assert body == pattern_bytes(300 * KiB)


def test_headers_stay_bytes_in_order_with_repeats(run: Run, transport: AsyncTransport) -> None:
    cookies = [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    with EchoUpstream(json_reply({}, status=201, headers=cookies)) as upstream:
        response, _ = run(fetch(transport, upstream))
    assert (response.status, response.reason) == (201, "Created")
    assert [h for h in response.headers if h[0] == b"Set-Cookie"] == [
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    ]


def test_head_has_no_body_and_its_connection_is_not_reused(
    run: Run, transport: AsyncTransport
) -> None:
    async def main() -> AsyncUpstreamResponse:
        return await transport.send(endpoint(upstream), request("HEAD"), TIMEOUTS)

    with EchoUpstream() as upstream:
        response = run(main())
    assert (response.status, response.complete, response.buffered_body()) == (200, True, b"")
    assert transport.pool.idle_count() == 0


def test_interim_heads_are_skipped(run: Run, transport: AsyncTransport) -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Real: yes\r\n\r\nok"
    )
    with GarbageUpstream(answer) as upstream:
        response, body = run(fetch(transport, upstream))
    assert (response.status, body, response.headers) == (
        200,
        b"ok",
        [(b"Content-Length", b"2"), (b"X-Real", b"yes")],
    )


def test_request_bodies_of_known_and_unknown_length(run: Run, transport: AsyncTransport) -> None:
    pieces = [b"a" * 70 * KiB, b"b" * 10, b""]
    expected = hashlib.sha256(b"".join(pieces)).hexdigest()

    async def main() -> None:
        for length in (70 * KiB + 10, None):
            body = body_of(pieces, length)
            response = await transport.send(endpoint(upstream), request("PUT", body), TIMEOUTS)
            await read_all(response)

    with EchoUpstream() as upstream:
        run(main())
        known, unknown = upstream.requests
    assert (known.header("Content-Length"), known.chunked) == (str(70 * KiB + 10), False)
    assert (unknown.header("Transfer-Encoding"), unknown.chunked) == ("chunked", True)
    assert known.body_sha256 == unknown.body_sha256 == expected


def test_a_small_body_is_sent_again_on_a_resend(run: Run, transport: AsyncTransport) -> None:
    async def main() -> None:
        body = body_of([b"once", b""], 4)
        for _ in range(2):
            await read_all(await transport.send(endpoint(upstream), request("PUT", body), TIMEOUTS))

    with EchoUpstream() as upstream:
        run(main())
    assert [r.body for r in upstream.requests] == [b"once", b"once"]


# -- the pool ------------------------------------------------------------------------------------


def test_each_event_loop_gets_its_own_connections(transport: AsyncTransport) -> None:
    async def once() -> None:
        await fetch(transport, upstream)

    with EchoUpstream() as upstream:
        first = asyncio.new_event_loop()
        first.run_until_complete(once())
        assert transport.pool.idle_count() == 1
        asyncio.run(once())  # another loop: the first loop's connection is not its to use
        assert upstream.connections_accepted == 2
        first.run_until_complete(once())  # the first loop still has its own
        assert upstream.connections_accepted == 2
        transport.pool.clear()
        first.run_until_complete(asyncio.sleep(0.01))
        first.close()
        asyncio.run(once())  # a closed loop is forgotten
        assert transport.pool.idle_count() == 1


def test_at_most_max_idle_connections_are_kept(run: Run, transport: AsyncTransport) -> None:
    transport.pool.max_idle_per_endpoint = 2

    async def main() -> int:
        await asyncio.gather(*(fetch(transport, upstream) for _ in range(4)))
        return transport.pool.idle_count(endpoint(upstream))

    with SlowUpstream(0.1) as upstream:
        assert run(main()) == 2
        assert upstream.connections_accepted == 4


def test_idle_connections_expire(run: Run, transport: AsyncTransport) -> None:
    async def main() -> None:
        await fetch(transport, upstream)
        transport.pool.clock = lambda: time.monotonic() + 31  # past idle_timeout (30 s)
        await fetch(transport, upstream)

    with EchoUpstream() as upstream:
        run(main())
        assert upstream.connections_accepted == 2


class ClosesWhenIdle(LoopbackServer):
    """Answers one request per connection, keep-alive, then closes the idle connection."""

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        if self._reader(sock, connection_id).read_request() is not None:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            self._sleep(0.05)


@pytest.mark.parametrize("replayable", [True, False])
def test_a_connection_closed_while_idle_is_replaced(
    run: Run, transport: AsyncTransport, replayable: bool
) -> None:
    async def main() -> bytes:
        await fetch(transport, upstream)
        await asyncio.sleep(0.2)  # the loop sees the close while the connection is idle
        response = await transport.send(endpoint(upstream), request(), TIMEOUTS)
        return await read_all(response)

    with ClosesWhenIdle() as upstream:
        assert run(main()) == b"ok"
        assert upstream.connections_accepted == 2


def test_a_close_the_loop_has_not_seen_is_probed_for_requests_not_resent(
    run: Run, transport: AsyncTransport
) -> None:
    async def main() -> bytes:
        await fetch(transport, upstream)
        time.sleep(0.2)  # blocks the loop: the close arrives, unseen
        response = await transport.send(endpoint(upstream), request("POST"), TIMEOUTS)
        return await read_all(response)

    with ClosesWhenIdle() as upstream:
        assert run(main()) == b"ok"
        assert upstream.connections_accepted == 2


def test_a_dead_pooled_connection_is_no_response_reused(
    run: Run, transport: AsyncTransport
) -> None:
    async def main() -> None:
        await fetch(transport, upstream)
        time.sleep(0.2)  # blocks the loop: the close arrives, unseen
        await transport.send(endpoint(upstream), request(), TIMEOUTS, replayable=True)

    with ClosesWhenIdle() as upstream, pytest.raises(NoResponse) as failure:
        run(main())
    assert failure.value.reused


def test_bytes_after_a_response_keep_its_connection_out_of_the_pool(
    run: Run, transport: AsyncTransport
) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n"
    with GarbageUpstream(answer) as upstream:
        response, body = run(fetch(transport, upstream))
    assert (response.status, body, transport.pool.idle_count()) == (200, b"ok", 0)


# -- failures.py's table, row by row ---------------------------------------------------------------


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose accept queue is full: SYNs are dropped, so connecting hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            time.sleep(0.02)
        yield listener.getsockname()[1]
        for filler in fillers:
            filler.close()


class Peer:
    host = "127.0.0.1"

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port, self.host = port, host


class HeadThenReset(LoopbackServer):
    """Sends a head promising 1 MiB and a little of it, then resets the connection."""

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        if self._reader(sock, connection_id).read_request() is not None:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + b"x" * 100)
            time.sleep(0.2)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Deaf(LoopbackServer):
    """Accepts, and never reads a byte."""

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        self._sleep(30)


def fails(run: Run, transport: AsyncTransport, upstream: Any, **options: Any) -> Exception:
    """The error a request (its body read to the end) raises."""
    timeouts = options.pop("timeouts", TIMEOUTS)
    method = options.pop("method", "GET")
    body = options.pop("body", None)

    async def main() -> None:
        response = await transport.send(
            endpoint(upstream, **options), request(method, body), timeouts
        )
        await read_all(response)

    with pytest.raises(Exception) as failure:
        run(main())
    return failure.value


def test_connection_refused_is_502(run: Run, transport: AsyncTransport) -> None:
    error = fails(run, transport, Peer(unused_port()))
    assert type(error) is UpstreamConnectError and "Connection refused" in error.detail


def test_forbidden_address_is_502_before_connecting(run: Run, transport: AsyncTransport) -> None:
    error = fails(run, transport, Peer(80, "169.254.169.254"))
    assert type(error) is UpstreamConnectError and "metadata" in error.detail


def test_connect_timeout_is_504(run: Run, transport: AsyncTransport, unanswered_port: int) -> None:
    started = time.monotonic()
    error = fails(run, transport, Peer(unanswered_port), timeouts=Timeouts(0.3, 2, 5))
    assert type(error) is UpstreamConnectTimeout
    assert time.monotonic() - started < 0.3 + SLACK


def test_tls_handshake_without_answer_is_a_connect_timeout(
    run: Run, transport: AsyncTransport
) -> None:
    with Deaf() as upstream:
        error = fails(run, transport, upstream, scheme="https", timeouts=Timeouts(0.3, 2, 5))
    assert type(error) is UpstreamConnectTimeout


def test_upstream_that_stops_reading_is_504(run: Run, transport: AsyncTransport) -> None:
    body = body_of([b"x" * 64 * KiB] * 1024 + [b""], 64 * MiB)
    with Deaf() as upstream:
        error = fails(
            run, transport, upstream, method="PUT", body=body, timeouts=Timeouts(2, 0.3, 5)
        )
    assert type(error) is GatewayTimeout and "stopped reading the request" in error.detail


def test_reset_while_sending_is_no_response(run: Run, transport: AsyncTransport) -> None:
    body = body_of([b"x" * 64 * KiB] * 1024 + [b""], 64 * MiB)
    with ResetUpstream() as upstream:
        error = fails(run, transport, upstream, method="PUT", body=body)
    assert type(error) is NoResponse and not error.reused


def test_reset_before_any_response_byte_is_no_response(run: Run, transport: AsyncTransport) -> None:
    with ResetUpstream() as upstream:
        error = fails(run, transport, upstream)
    assert type(error) is NoResponse and not error.reused


def test_reset_on_accept_is_502(run: Run, transport: AsyncTransport) -> None:
    # The sync transport always sees this after connecting (NoResponse); the loop may see the
    # reset before the request is written, and then it is a failure to connect.
    with ResetUpstream(after_request=False) as upstream:
        error = fails(run, transport, upstream)
    assert type(error) in (NoResponse, UpstreamConnectError) and error.status == 502
    assert not getattr(error, "reused", False)


def test_close_in_the_middle_of_the_head_is_502(run: Run, transport: AsyncTransport) -> None:
    with GarbageUpstream(b"HTTP/1.1 200 OK\r\nContent-Le") as upstream:
        error = fails(run, transport, upstream)
    assert type(error) is BadGateway and "middle of the head" in error.detail


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (b"this is not HTTP\r\n\r\n", "not valid HTTP/1.1"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            "switched",
        ),
    ],
)
def test_what_is_not_http_is_502(
    run: Run, transport: AsyncTransport, answer: bytes, detail: str
) -> None:
    with GarbageUpstream(answer) as upstream:
        error = fails(run, transport, upstream)
    assert type(error) is BadGateway and detail in error.detail


def test_a_malformed_streamed_body_is_502(run: Run, transport: AsyncTransport) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n"

    class Malformed(LoopbackServer):
        def _serve(self, sock: socket.socket, connection_id: int) -> None:
            if self._reader(sock, connection_id).read_request() is not None:
                sock.sendall(chunked)
                time.sleep(0.1)
                sock.sendall(b"zz\r\n")
                self._sleep(5)

    with Malformed() as upstream:
        error = fails(run, transport, upstream)
    assert type(error) is BadGateway and "malformed body" in error.detail


@pytest.mark.parametrize("declared", [1000, MiB], ids=["buffered", "streamed"])
def test_a_body_closed_before_its_end_is_502(
    run: Run, transport: AsyncTransport, declared: int
) -> None:
    with TruncatedUpstream(declared, 10) as upstream:
        error = fails(run, transport, upstream)
    assert type(error) is BadGateway and "closed the connection in the middle of the body" in str(
        error
    )


def test_a_body_reset_before_its_end_is_502(run: Run, transport: AsyncTransport) -> None:
    with HeadThenReset() as upstream:
        error = fails(run, transport, upstream)
    assert type(error) is BadGateway and "failed in the middle of the body" in error.detail


def test_silent_upstream_is_504_after_the_read_timeout(run: Run, transport: AsyncTransport) -> None:
    started = time.monotonic()
    with SlowUpstream(5) as upstream:
        error = fails(run, transport, upstream, timeouts=Timeouts(2, 0.3, 5))
    assert type(error) is GatewayTimeout and "did not answer in time" in error.detail
    assert time.monotonic() - started < 0.3 + SLACK


def test_a_silent_stream_is_504_after_the_read_timeout(run: Run, transport: AsyncTransport) -> None:
    with EchoUpstream(stream_bytes(MiB, 64 * KiB, chunk_delay=3)) as upstream:
        error = fails(run, transport, upstream, timeouts=Timeouts(2, 0.3, 5))
    assert type(error) is GatewayTimeout and "stopped sending the body" in error.detail


def test_a_trickled_small_body_is_504_within_the_try_deadline(
    run: Run, transport: AsyncTransport
) -> None:
    started = time.monotonic()
    trickle = stream_bytes(40, 1, chunked=False, chunk_delay=0.1)
    with EchoUpstream(trickle) as upstream:
        error = fails(run, transport, upstream, timeouts=Timeouts(2, 1, 0.5))
    assert type(error) is GatewayTimeout and "send the whole response in time" in error.detail
    assert time.monotonic() - started < 0.5 + SLACK


def test_max_response_duration_bounds_the_head(run: Run, transport: AsyncTransport) -> None:
    with SlowUpstream(5) as upstream:
        error = fails(run, transport, upstream, timeouts=Timeouts(2, 2, 5, response=0.3))
    assert type(error) is GatewayTimeout and "max_response_duration" in error.detail


def test_max_response_duration_cuts_a_stream(run: Run, transport: AsyncTransport) -> None:
    cuts: list[ResponseCut] = []

    async def main() -> int:
        timeouts = Timeouts(2, 2, 5, response=0.5)
        response = await transport.send(endpoint(upstream), request(), timeouts)
        response.on_cut = cuts.append
        received = 0
        with pytest.raises(ResponseCut) as cut:
            async for chunk in response:
                received += len(chunk)
        assert cuts == [cut.value]
        return received

    started = time.monotonic()
    with EchoUpstream(stream_bytes(10 * MiB, 16 * KiB, chunk_delay=0.05)) as upstream:
        assert 0 < run(main()) < 10 * MiB
    assert time.monotonic() - started < 0.5 + SLACK


# -- TLS -------------------------------------------------------------------------------------------


class TLSUpstream(EchoUpstream):
    """An echo server behind TLS, presenting a self-signed certificate for ``localhost``."""

    def __init__(self, certificate: str, key: str) -> None:
        super().__init__()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certificate, key)

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        try:
            tls = self.context.wrap_socket(sock, server_side=True)
        except OSError:  # the client refused the certificate
            return
        super()._serve(tls, connection_id)


@pytest.fixture
def certificate(tmp_path: Any) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


def tls_get(run: Run, transport: AsyncTransport, upstream: Any, verify: bool) -> bytes:
    async def main() -> bytes:
        for _ in range(2):  # the second request reuses the TLS connection
            where = Endpoint("https", "localhost", upstream.port, verify)
            body = await read_all(await transport.send(where, request(), TIMEOUTS))
        return body

    result: bytes = run(main())
    return result


def test_tls_with_an_untrusted_certificate_is_502(
    run: Run, transport: AsyncTransport, certificate: tuple[str, str]
) -> None:
    with TLSUpstream(*certificate) as upstream:
        error = fails(run, transport, Peer(upstream.port, "localhost"), scheme="https")
    assert type(error) is UpstreamConnectError and "TLS handshake" in error.detail


def test_tls_verification_can_be_turned_off(
    run: Run, transport: AsyncTransport, certificate: tuple[str, str]
) -> None:
    with TLSUpstream(*certificate) as upstream:
        assert b'"target": "/x?y=1"' in tls_get(run, transport, upstream, verify=False)
        assert upstream.connections_accepted == 1


def test_tls_with_a_trusted_certificate(
    run: Run,
    transport: AsyncTransport,
    certificate: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setattr(sync_pool, "_tls_contexts", {})  # contexts read the trust store once
    with TLSUpstream(*certificate) as upstream:
        assert b'"target": "/x?y=1"' in tls_get(run, transport, upstream, verify=True)
        assert upstream.connections_accepted == 1


# -- cancellation --------------------------------------------------------------------------------


def test_cancelled_while_waiting_for_the_head(
    run: Run, transport: AsyncTransport, opened: list[AsyncConnection]
) -> None:
    async def main() -> None:
        task = asyncio.create_task(transport.send(endpoint(upstream), request(), TIMEOUTS))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with SlowUpstream(5) as upstream:
        run(main())
    (conn,) = opened
    assert conn.closed and conn.transport.is_closing()
    assert transport.pool.idle_count() == 0


def test_cancelled_while_waiting_for_the_body(
    run: Run, transport: AsyncTransport, opened: list[AsyncConnection]
) -> None:
    async def consume() -> None:
        response = await transport.send(endpoint(upstream), request(), TIMEOUTS)
        async for _ in response:
            pass

    async def main() -> bytes:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert opened[0].closed and transport.pool.idle_count() == 0
        upstream.responder = Reply(body=b"next")
        return (await fetch(transport, upstream))[1]

    with EchoUpstream(stream_bytes(MiB, 16 * KiB, chunk_delay=0.2)) as upstream:
        assert run(main()) == b"next"  # the pool is still good: a fresh connection
        assert upstream.connections_accepted == 2


def test_a_reader_that_leaves_early_drops_the_connection(
    run: Run, transport: AsyncTransport, opened: list[AsyncConnection]
) -> None:
    async def consume() -> None:
        response = await transport.send(endpoint(upstream), request(), TIMEOUTS)
        async for _ in response:
            await asyncio.sleep(10)  # a slow client, cancelled here: outside the transport

    async def main() -> None:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)  # the abandoned body iterator is closed by the loop

    with EchoUpstream(stream_bytes(100 * MiB)) as upstream:
        run(main())
    assert opened[0].closed and transport.pool.idle_count() == 0


def test_cancelled_while_sending_the_body(
    run: Run, transport: AsyncTransport, opened: list[AsyncConnection]
) -> None:
    closed: list[bool] = []

    async def stalled() -> AsyncIterator[dict[str, Any]]:
        try:
            yield {"type": "http.request", "body": b"x" * 10, "more_body": True}
            await asyncio.Event().wait()  # the client never sends the rest
            yield {}
        finally:
            closed.append(True)

    async def main() -> None:
        messages = stalled()
        body = AsyncRequestBody(messages.__anext__, 100, None)
        task = asyncio.create_task(
            transport.send(endpoint(upstream), request("PUT", body), TIMEOUTS)
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with EchoUpstream() as upstream:
        run(main())
    assert opened[0].closed and transport.pool.idle_count() == 0
    assert closed == [True]  # the client's side of the body was let go too


# -- flow control --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_slow_reader_holds_a_large_download_back(
    run: Run, transport: AsyncTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 200 * MiB
    held: list[tuple[int, bool]] = []  # after each read: body bytes held, reading paused
    data_received = AsyncConnection.data_received

    def measured(self: AsyncConnection, data: bytes) -> None:
        data_received(self, data)
        held.append((self.buffered, self.reading_paused))

    monkeypatch.setattr(AsyncConnection, "data_received", measured)

    async def main() -> int:
        response = await transport.send(endpoint(upstream), request(), TIMEOUTS)
        received = 0
        async for chunk in response:
            received += len(chunk)
            await asyncio.sleep(0.005 if received % (8 * MiB) < len(chunk) else 0)
        return received

    with EchoUpstream(stream_bytes(size, chunked=False)) as upstream:
        assert run(main()) == size
    assert any(paused for _, paused in held)  # the reader fell behind, and reading paused
    assert max(buffered for buffered, _ in held) <= HIGH_WATER + MiB  # so nothing ran away


class LateReader(EchoUpstream):
    """An echo server that reads nothing for its first half second on each connection."""

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        if self._sleep(0.5):
            super()._serve(sock, connection_id)


@pytest.mark.slow
def test_a_slow_upstream_holds_a_large_upload_back(
    run: Run,
    transport: AsyncTransport,
    opened: list[AsyncConnection],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chunk, count = b"u" * 64 * KiB, 3200
    peaks: list[int] = []
    pauses: list[bool] = []
    pause = AsyncConnection.pause_writing

    def counted(self: AsyncConnection) -> None:
        pauses.append(True)
        pause(self)

    monkeypatch.setattr(AsyncConnection, "pause_writing", counted)

    async def messages() -> AsyncIterator[dict[str, Any]]:
        for n in range(count):
            if opened:
                peaks.append(opened[0].transport.get_write_buffer_size())
            yield {"type": "http.request", "body": chunk, "more_body": n < count - 1}

    async def main() -> None:
        body = AsyncRequestBody(messages().__anext__, len(chunk) * count, None)
        response = await transport.send(endpoint(upstream), request("PUT", body), TIMEOUTS)
        await read_all(response)

    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(chunk)
    with LateReader() as upstream:
        run(main())
        (received,) = upstream.requests
    assert (received.body_size, received.body_sha256) == (len(chunk) * count, expected.hexdigest())
    assert pauses  # the upstream held the body back at least once
    assert max(peaks) <= MiB  # and the transport's buffer never ran away
