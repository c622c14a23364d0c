"""The loopback upstreams, seen from plain HTTP clients and raw sockets (no Django needed)."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest

from django_gateway.testing.upstreams import (
    BlackholeUpstream,
    EchoUpstream,
    GarbageUpstream,
    LoopbackServer,
    PatternBody,
    RecordedRequest,
    Reply,
    ResetUpstream,
    SlowUpstream,
    TruncatedUpstream,
    json_reply,
    pattern_bytes,
    redirect_to,
    stream_bytes,
    unused_port,
)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.fixture
def echo() -> Iterator[EchoUpstream]:
    with EchoUpstream() as upstream:
        yield upstream


def connect(server: LoopbackServer, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_response(sock: socket.socket, method: str = "GET") -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    return response


def read_until_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# -- EchoUpstream ---------------------------------------------------------------------------


def test_echo_records_method_target_and_headers_exactly(echo: EchoUpstream) -> None:
    head = (
        b"PATCH /a%2Fb/c?x=1&x=2 HTTP/1.1\r\nHost: example.test\r\n"
        b"X-Dup: one\r\nx-dup: two\r\nX-MiXeD-CaSe: Value With  Spaces\r\n\r\n"
    )
    with connect(echo) as sock:
        sock.sendall(head)
        response = read_response(sock)
        echoed = json.loads(response.read())

    (request,) = echo.wait_for_requests(1)
    assert request.raw_head == head
    assert (request.method, request.target, request.http_version) == (
        "PATCH",
        "/a%2Fb/c?x=1&x=2",
        "1.1",
    )
    assert (request.path, request.query) == ("/a%2Fb/c", "x=1&x=2")
    assert request.headers == [
        ("Host", "example.test"),
        ("X-Dup", "one"),
        ("x-dup", "two"),
        ("X-MiXeD-CaSe", "Value With  Spaces"),
    ]
    assert request.header("X-DUP") == "one"
    assert request.header_all("x-dup") == ["one", "two"]
    assert request.header("absent") is None
    assert (request.body, request.body_size, request.body_sha256) == (b"", 0, EMPTY_SHA256)
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json"
    assert echoed == {
        "method": "PATCH",
        "target": "/a%2Fb/c?x=1&x=2",
        "path": "/a%2Fb/c",
        "query": "x=1&x=2",
        "headers": [[name, value] for name, value in request.headers],
        "body_size": 0,
        "body_sha256": EMPTY_SHA256,
    }


def test_keep_alive_serves_two_requests_on_one_connection(echo: EchoUpstream) -> None:
    client = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=5)
    for path in ("/one", "/two"):
        client.request("POST", path, body=b"payload")
        assert client.getresponse().read()
    client.close()

    first, second = echo.wait_for_requests(2)
    assert (first.target, second.target) == ("/one", "/two")
    assert first.connection_id == second.connection_id
    assert echo.connections_accepted == 1
    assert second.body == b"payload"


def test_pipelined_requests_are_split_exactly(echo: EchoUpstream) -> None:
    one = b"POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"
    two = b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
    with connect(echo) as sock:
        sock.sendall(one + b"abc" + two)
        sock.shutdown(socket.SHUT_WR)
        assert read_until_eof(sock).count(b"HTTP/1.1 200 OK\r\n") == 2

    first, second = echo.wait_for_requests(2)
    assert (first.raw_head, first.body, second.raw_head) == (one, b"abc", two)


def test_chunked_request_split_across_reads_then_pipelined(echo: EchoUpstream) -> None:
    head = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    two = b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
    pieces = [head[:9], head[9:] + b"1", b"0\r\n" + b"\n" * 16 + b"\r\n0\r\n\r\n" + two]
    with connect(echo) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.02)
        first, second = echo.wait_for_requests(2)
    assert (first.raw_head, first.body, first.chunked) == (head, b"\n" * 16, True)
    assert second.raw_head == two


def test_client_connection_close_is_honoured(echo: EchoUpstream) -> None:
    with connect(echo) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        raw = read_until_eof(sock)  # returns only because the server closed
    assert b"\r\nConnection: close\r\n" in raw


def test_chunked_request_body_is_decoded(echo: EchoUpstream) -> None:
    head = b"PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n"
    with connect(echo) as sock:
        sock.sendall(head + body)
        echoed = json.loads(read_response(sock).read())

    (request,) = echo.wait_for_requests(1)
    assert request.chunked
    assert request.raw_head == head
    assert (request.body, request.body_size) == (b"hello world", 11)
    assert request.body_sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert request.trailers == [("X-Checksum", "abc")]
    assert echoed["body_size"] == 11


def test_large_upload_is_streamed_and_hashed(echo: EchoUpstream) -> None:
    size = 50 * 1024 * 1024
    body = PatternBody(size, 256 * 1024)
    client = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=10)
    client.request("POST", "/upload", body=iter(body), headers={"Content-Length": str(size)})
    echoed = json.loads(client.getresponse().read())
    client.close()

    expected = hashlib.sha256()
    for piece in body:
        expected.update(piece)
    (request,) = echo.wait_for_requests(1)
    assert (echoed["body_size"], echoed["body_sha256"]) == (size, expected.hexdigest())
    assert (request.body_size, request.body_sha256) == (size, expected.hexdigest())
    assert request.body == pattern_bytes(1024 * 1024)  # only keep_body_limit is kept
    assert not request.chunked


def test_chunked_upload_with_many_line_feeds() -> None:
    with EchoUpstream(keep_body_limit=0) as upstream:
        size = 4 * 1024 * 1024
        client = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=10)
        client.request("POST", "/", body=iter(PatternBody(size, 100_000)), encode_chunked=True)
        echoed = json.loads(client.getresponse().read())
        client.close()
    assert echoed["body_sha256"] == hashlib.sha256(pattern_bytes(size)).hexdigest()
    assert upstream.requests[0].chunked
    assert upstream.requests[0].body == b""


def test_expect_100_continue(echo: EchoUpstream) -> None:
    with connect(echo) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        )
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"ok")
        assert json.loads(read_response(sock).read())["body_size"] == 2


@pytest.mark.parametrize("chunked", [True, False])
def test_streamed_download(chunked: bool) -> None:
    size = 3 * 1024 * 1024 + 17
    with EchoUpstream(responder=stream_bytes(size, chunked=chunked)) as upstream:
        client = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=5)
        for _ in range(2):  # the reply is re-iterable, and the connection survives it
            client.request("GET", "/download")
            response = client.getresponse()
            assert response.chunked is chunked
            assert response.getheader("Content-Length") == (None if chunked else str(size))
            assert response.read() == pattern_bytes(size)
        client.close()
        assert upstream.connections_accepted == 1


def test_chunk_delay_sends_pieces_as_they_come(echo: EchoUpstream) -> None:
    echo.responder = Reply(body=PatternBody(2, 1), chunk_delay=0.2)
    with connect(echo) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        started = time.monotonic()
        response = read_response(sock)
        assert response.read(1) == b"\x00"
        assert time.monotonic() - started < 0.15
        assert response.read() == b"\x01"
        assert time.monotonic() - started >= 0.2


def test_close_delimited_download(echo: EchoUpstream) -> None:
    echo.responder = Reply(body=[b"abc", b"", b"def"], chunked=False)
    with connect(echo) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        raw = read_until_eof(sock)
    assert raw.endswith(b"\r\nConnection: close\r\n\r\nabcdef")


def test_head_gets_get_headers_without_body(echo: EchoUpstream) -> None:
    echo.responder = Reply(body=b"0123456789")
    client = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=5)
    client.request("HEAD", "/")
    response = client.getresponse()
    assert response.getheader("Content-Length") == "10"
    assert response.read() == b""
    client.request("GET", "/")  # no stray body bytes were left on the connection
    assert client.getresponse().read() == b"0123456789"
    client.close()
    assert len({request.connection_id for request in echo.requests}) == 1


def test_repeated_set_cookie_headers_stay_separate(echo: EchoUpstream) -> None:
    echo.responder = Reply(headers=[("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2")])
    with connect(echo) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        response = read_response(sock)
    assert response.headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2"]
    assert response.getheader("Content-Length") == "0"


def test_redirect_and_custom_status(echo: EchoUpstream) -> None:
    echo.responder = lambda request: (
        redirect_to("/elsewhere", 307) if request.path == "/old" else Reply(599, body=b"x")
    )
    client = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=5)
    client.request("GET", "/old")
    response = client.getresponse()
    assert (response.status, response.reason) == (307, "Temporary Redirect")
    assert response.getheader("Location") == "/elsewhere"
    response.read()
    client.request("GET", "/new")
    response = client.getresponse()
    assert (response.status, response.reason, response.read()) == (599, "", b"x")
    client.close()


def test_json_reply(echo: EchoUpstream) -> None:
    echo.responder = json_reply({"ok": True}, status=201, headers=[("X-Id", "7")])
    client = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=5)
    client.request("POST", "/items", body=b"{}")
    response = client.getresponse()
    assert (response.status, response.getheader("X-Id")) == (201, "7")
    assert json.loads(response.read()) == {"ok": True}
    client.close()


def test_responder_errors_become_500(echo: EchoUpstream) -> None:
    def broken(request: RecordedRequest) -> Reply:
        raise ValueError("boom")

    echo.responder = broken
    client = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=5)
    client.request("GET", "/")
    assert client.getresponse().status == 500
    client.close()
    assert [type(error) for error in echo.errors] == [ValueError]


def test_malformed_request_gets_400(echo: EchoUpstream) -> None:
    with connect(echo) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        assert read_until_eof(sock).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert echo.request_count == 0


def test_clear_and_stop_with_idle_keep_alive_connection() -> None:
    upstream = EchoUpstream().start()
    with connect(upstream) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        read_response(sock).read()
        upstream.clear()
        assert (upstream.request_count, upstream.connections_accepted) == (0, 0)
        started = time.monotonic()
        upstream.stop()
        assert time.monotonic() - started < 1
        assert sock.recv(1) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", upstream.port), timeout=1)


def test_ipv6_host() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        upstream = EchoUpstream(host="::1").start()
    except OSError:
        pytest.skip("::1 not available")
    with upstream:
        assert upstream.url == f"http://[::1]:{upstream.port}"
        client = http.client.HTTPConnection("::1", upstream.port, timeout=5)
        client.request("GET", "/v6")
        assert client.getresponse().status == 200
        client.close()


# -- fault servers --------------------------------------------------------------------------


def send_and_read(server: LoopbackServer, data: bytes) -> bytes | None:
    """One raw exchange; ``None`` if the connection was reset (at any point, even connect)."""
    try:
        with connect(server) as sock:
            sock.sendall(data)
            return sock.recv(1024)
    except (ConnectionResetError, BrokenPipeError):
        return None


@pytest.mark.parametrize("after_request", [True, False])
def test_reset(after_request: bool) -> None:
    with ResetUpstream(after_request=after_request) as upstream:
        head = b"POST /charge HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
        assert send_and_read(upstream, head) in (None, b"")
        upstream.wait_for_connections(1)
        if after_request:
            assert [request.target for request in upstream.wait_for_requests(1)] == ["/charge"]
        else:
            assert upstream.request_count == 0


def test_reset_after_request_is_a_real_rst() -> None:
    with ResetUpstream() as upstream, connect(upstream) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            sock.recv(1024)


def test_garbage() -> None:
    with GarbageUpstream(payload=b"\x00\x01SSH-2.0\r\n") as upstream, connect(upstream) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert read_until_eof(sock) == b"\x00\x01SSH-2.0\r\n"
        assert upstream.request_count == 1


def test_blackhole_never_answers() -> None:
    with BlackholeUpstream() as upstream, connect(upstream, timeout=0.3) as sock:
        sock.sendall(b"GET /void HTTP/1.1\r\nHost: h\r\n\r\n")
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert [request.target for request in upstream.wait_for_requests(1)] == ["/void"]
        assert upstream.bytes_received == len(b"GET /void HTTP/1.1\r\nHost: h\r\n\r\n")


def test_slow_upstream_answers_after_delay() -> None:
    with SlowUpstream(0.3) as upstream:
        client = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=5)
        started = time.monotonic()
        client.request("GET", "/slow")
        assert client.getresponse().status == 200
        assert time.monotonic() - started >= 0.3
        client.close()


def test_slow_upstream_stop_interrupts_the_wait() -> None:
    upstream = SlowUpstream(30).start()
    with connect(upstream) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        upstream.wait_for_requests(1)
        started = time.monotonic()
        upstream.stop()
        assert time.monotonic() - started < 1
        assert read_until_eof(sock) == b""


def test_truncated_body() -> None:
    with TruncatedUpstream() as upstream, connect(upstream) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        response = read_response(sock)
        assert response.getheader("Content-Length") == "1000"
        with pytest.raises(http.client.IncompleteRead) as excinfo:
            response.read()
        assert len(excinfo.value.partial) == 10
        assert upstream.request_count == 1


def test_unused_port_refuses_connections() -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", unused_port()), timeout=1)


def test_port_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = EchoUpstream().url


def test_a_fixed_port_can_be_asked_for():
    port = unused_port()
    with EchoUpstream(port=port) as upstream:
        assert upstream.port == port
        assert upstream.url.endswith(f":{port}")
