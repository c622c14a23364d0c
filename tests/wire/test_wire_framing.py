"""Framing and headers on the wire, through gunicorn and uvicorn (DESIGN §4 "Proxying").

Where a server refuses malformed framing itself, before the gateway sees the request, the
contract is the outcome (a 4xx/501 refusal, nothing forwarded); each such case says which layer
answers in which shell. Every case looks from both ends: the bytes the client got back, and what
the upstream received (or that it received nothing at all).
"""

from __future__ import annotations

import gzip
import hashlib
import os

import pytest

from django_gateway.testing.upstreams import (
    EchoUpstream,
    RecordedRequest,
    Reply,
    echo_reply,
    pattern_bytes,
    stream_bytes,
)

from .client import assert_problem, request
from .conftest import GatewayServer, WireConfig

pytestmark = pytest.mark.wire

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


# -- framing a server lets through, or refuses itself -----------------------------------------


def test_gzip_chunked_transfer_encoding_is_refused(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gateway_server.exchange(
        request(
            "POST /api/upload HTTP/1.1",
            "Host: wire.test",
            "Transfer-Encoding: gzip, chunked",
            body=chunked(gzip.compress(b"hello")),
        )
    )
    # Both servers pass it on (chunked is the final coding); the gateway refuses it in both.
    assert response.status in (400, 501)
    assert response.is_problem
    assert echo.request_count == 0
    assert echo.connections_accepted == 0


def test_chunked_with_content_length_is_refused(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gateway_server.exchange(
        request(
            "POST /api/upload HTTP/1.1",
            "Host: wire.test",
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
            body=chunked(b"hello"),
        )
    )
    # Both servers refuse it themselves, before the gateway: gunicorn with its text/html 400,
    # uvicorn (llhttp) with its text/plain "Invalid HTTP request received." 400.
    assert 400 <= response.status < 500
    assert echo.request_count == 0
    assert echo.connections_accepted == 0


def test_http11_request_without_host_is_refused(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gateway_server.exchange(request("GET /api/x HTTP/1.1", "Connection: close"))
    assert_problem(response, 400)  # neither server requires Host: the gateway does
    assert echo.request_count == 0


@pytest.mark.parametrize(
    "head",
    [
        ("Transfer-Encoding: chunked, gzip",),  # chunked must be the last coding
        ("Transfer-Encoding: identity",),
        ("Content-Length: 5", "Content-Length: 6"),
        ("Content-Length: 0x5",),
    ],
    ids=["chunked-not-last", "identity", "two-lengths", "hex-length"],
)
def test_unframeable_request_bodies_are_refused(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream, head: tuple[str, ...]
):
    """A body whose length the server cannot tell is refused by the server itself in both shells
    (gunicorn's text/html 400, llhttp's text/plain 400 under uvicorn); never forwarded."""
    wire.route(echo)
    response = gateway_server.exchange(
        request(
            "POST /api/upload HTTP/1.1",
            "Host: wire.test",
            *head,
            "Connection: close",
            body=b"5\r\nhello\r\n0\r\n\r\n",
        ),
        until_eof=True,
    )
    assert 400 <= response.status < 500 and response.status != 404
    assert echo.connections_accepted == 0


def test_two_host_headers_are_refused(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    """gunicorn refuses a repeated Host itself; uvicorn passes both on and the ASGI shell, which
    joins them (as Django's ASGIRequest does), refuses the joined value as a Host."""
    wire.route(echo)
    response = gateway_server.exchange(
        request("GET /api/x HTTP/1.1", "Host: wire.test", "Host: other.test", "Connection: close")
    )
    assert response.status == 400
    assert echo.connections_accepted == 0


def test_http10_request_without_host_is_proxied(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    """HTTP/1.0 has no Host requirement: the refusal above is about the version, not a glitch."""
    wire.route(echo)
    response = gateway_server.exchange(request("GET /api/x HTTP/1.0"))
    assert response.status == 200
    (seen,) = echo.requests
    assert seen.target == "/x"
    assert seen.header("host") == f"127.0.0.1:{echo.port}"


# -- bodies ------------------------------------------------------------------------------------


def test_chunked_request_body_is_streamed_chunked(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo)
    pieces = [os.urandom(size) for size in (1, 100, 65536, 300_000, 7)]
    body = b"".join(pieces)
    response = gateway_server.exchange(
        request(
            "POST /api/upload HTTP/1.1",
            "Host: wire.test",
            "Content-Type: application/octet-stream",
            "Transfer-Encoding: chunked",
            "Connection: close",
            body=chunked(*pieces),
        )
    )
    assert response.status == 200
    (seen,) = echo.requests
    assert seen.method == "POST"
    assert seen.target == "/upload"
    assert seen.chunked
    assert seen.header("transfer-encoding") == "chunked"
    assert seen.header("content-length") is None
    assert seen.body_size == len(body)
    assert seen.body_sha256 == hashlib.sha256(body).hexdigest()
    echoed = response.json()
    assert (echoed["body_size"], echoed["body_sha256"]) == (seen.body_size, seen.body_sha256)


def test_content_length_over_route_limit_is_413_before_the_upstream(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo, max_body_size=1000)
    response = gateway_server.exchange(
        request(
            "POST /api/upload HTTP/1.1",
            "Host: wire.test",
            "Content-Length: 5000",
            "Connection: close",
            body=b"x" * 5000,
        )
    )
    assert_problem(response, 413)
    assert echo.request_count == 0
    assert echo.connections_accepted == 0


def test_chunked_body_over_route_limit_is_413(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo, max_body_size=100_000)
    response = gateway_server.exchange(
        request(
            "POST /api/upload HTTP/1.1",
            "Host: wire.test",
            "Transfer-Encoding: chunked",
            "Connection: close",
            body=chunked(*[b"y" * 40_000] * 5),
        )
    )
    assert_problem(response, 413)
    assert echo.request_count == 0  # the upstream never got a complete request


# -- hop-by-hop headers ------------------------------------------------------------------------


def test_hop_by_hop_request_headers_never_reach_the_upstream(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gateway_server.exchange(
        request(
            "GET /api/x HTTP/1.1",
            "Host: wire.test",
            "Connection: close, X-Secret",
            "X-Secret: 1",
            "Keep-Alive: timeout=30",
            "TE: trailers",
            "Upgrade: websocket",
            "Proxy-Authorization: Basic c2VjcmV0OnNlY3JldA==",
            "Proxy-Connection: keep-alive",
            "Trailer: X-Checksum",
            "X-Visible: yes",
        )
    )
    assert response.status == 200
    (seen,) = echo.requests
    names = {name.lower() for name, _ in seen.headers}
    assert not names & (HOP_BY_HOP - {"connection"} | {"x-secret"}), seen.headers
    # The gateway may speak for its own connection, but never pass on the client's tokens.
    tokens = {t.strip().lower() for v in seen.header_all("connection") for t in v.split(",")}
    assert tokens <= {"keep-alive"}, seen.header_all("connection")
    assert b"c2VjcmV0" not in seen.raw_head
    assert seen.header("x-visible") == "yes"


def test_hop_by_hop_response_headers_never_reach_the_client(
    wire: WireConfig, gateway_server: GatewayServer
):
    reply = Reply(
        headers=[
            ("Content-Type", "text/plain"),
            ("Connection", "X-Up"),
            ("X-Up", "1"),
            ("Keep-Alive", "timeout=5, max=100"),
            ("Upgrade", "websocket"),
            ("Proxy-Authenticate", 'Basic realm="upstream"'),
            ("Trailer", "X-Checksum"),
            ("X-Visible", "yes"),
        ],
        body=b"ok",
    )
    with EchoUpstream(responder=reply) as upstream:
        wire.route(upstream)
        response = gateway_server.exchange(
            request("GET /api/x HTTP/1.1", "Host: wire.test", "Connection: close")
        )
    assert response.status == 200
    assert response.body == b"ok"
    assert response.header("x-visible") == "yes"
    leaked = response.header_names & (HOP_BY_HOP - {"connection"} | {"x-up"})
    assert not leaked, response.headers
    tokens = {t.strip().lower() for v in response.header_all("connection") for t in v.split(",")}
    assert "x-up" not in tokens


# -- Host --------------------------------------------------------------------------------------


def test_host_is_the_upstreams_unless_preserve_host(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    service = wire.service(echo)
    wire.route(service, paths=["/api"], sync=False)
    wire.route(service, paths=["/kept"], preserve_host=True)
    for target in ("/api/x", "/kept/x"):
        response = gateway_server.exchange(
            request(f"GET {target} HTTP/1.1", "Host: Gateway.Example.:8080", "Connection: close")
        )
        assert response.status == 200
    rewritten, preserved = echo.requests
    # The client's spelling reaches the upstream in the canonical form the routes matched.
    assert rewritten.header_all("host") == [f"127.0.0.1:{echo.port}"]
    assert rewritten.header("x-forwarded-host") == "gateway.example:8080"
    assert preserved.header_all("host") == ["gateway.example:8080"]


# -- response headers and bodies ---------------------------------------------------------------


def test_repeated_set_cookie_headers_stay_separate(wire: WireConfig, gateway_server: GatewayServer):
    cookies = ["a=1; Path=/", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; HttpOnly", "c=3"]
    reply = Reply(headers=[("Set-Cookie", c) for c in cookies], body=b"ok")
    with EchoUpstream(responder=reply) as upstream:
        wire.route(upstream)
        response = gateway_server.get("/api/login")
    assert response.status == 200
    assert response.header_all("set-cookie") == cookies


@pytest.mark.parametrize("size", [2_000, 300_000], ids=["buffered", "streamed"])
def test_content_encoding_passes_untouched(
    wire: WireConfig, gateway_server: GatewayServer, size: int
):
    payload = gzip.compress(os.urandom(size // 2) * 2)
    reply = Reply(
        headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        body=payload,
    )
    with EchoUpstream(responder=reply) as upstream:
        wire.route(upstream)
        response = gateway_server.get("/api/data", "Accept-Encoding: gzip")
        (seen,) = upstream.requests
    assert response.status == 200
    assert response.header("content-encoding") == "gzip"
    assert response.body == payload
    assert seen.header("accept-encoding") == "gzip"


@pytest.mark.parametrize("size", [1_234, 500_000], ids=["small", "large"])
def test_head_response_has_content_length_and_no_body(
    wire: WireConfig, gateway_server: GatewayServer, size: int
):
    reply = Reply(headers=[("Content-Type", "application/octet-stream")], body=b"z" * size)
    with EchoUpstream(responder=reply) as upstream:
        wire.route(upstream)
        with gateway_server.connect() as conn:
            conn.send(request("HEAD /api/file HTTP/1.1", "Host: wire.test", "Connection: close"))
            response = conn.read_response(until_eof=True)
        (seen,) = upstream.requests
    assert response.status == 200
    assert response.header("content-length") == str(size)
    assert response.body == b""
    assert seen.method == "HEAD"


def test_two_requests_on_one_keep_alive_connection(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo)
    with gateway_server.connect() as conn:
        conn.send(request("GET /api/first HTTP/1.1", "Host: wire.test"))
        first = conn.read_response()
        conn.send(
            request(
                "POST /api/second HTTP/1.1",
                "Host: wire.test",
                "Content-Length: 5",
                "Connection: close",
                body=b"hello",
            )
        )
        second = conn.read_response()
        assert conn.at_eof()
    assert (first.status, second.status) == (200, 200)
    assert "close" not in (first.header("connection") or "").lower()
    assert [r.target for r in echo.requests] == ["/first", "/second"]
    assert [r["target"] for r in (first.json(), second.json())] == ["/first", "/second"]
    assert echo.requests[1].body == b"hello"


def test_keep_alive_after_a_streamed_response(wire: WireConfig, gateway_server: GatewayServer):
    """A chunked upstream body is re-framed by gunicorn; the next request on the connection
    must still parse, so the framing of the first one was exact."""
    download = stream_bytes(300_000, 7_000)

    def responder(seen: RecordedRequest) -> Reply:
        return download if seen.path == "/stream" else echo_reply(seen)

    with EchoUpstream(responder=responder) as upstream:
        wire.route(upstream)
        with gateway_server.connect() as conn:
            conn.send(request("GET /api/stream HTTP/1.1", "Host: wire.test"))
            first = conn.read_response()
            conn.send(request("GET /api/after HTTP/1.1", "Host: wire.test", "Connection: close"))
            second = conn.read_response()
        targets = [r.target for r in upstream.requests]
    assert first.status == 200
    assert first.body == pattern_bytes(300_000)
    assert second.status == 200
    assert second.json()["target"] == "/after"
    assert targets == ["/stream", "/after"]


def test_expect_100_continue(wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream):
    wire.route(echo)
    with gateway_server.connect() as conn:
        conn.send(
            request(
                "PUT /api/doc HTTP/1.1",
                "Host: wire.test",
                "Expect: 100-continue",
                "Content-Length: 11",
                "Connection: close",
            )
        )
        conn.send(b"hello world")
        response = conn.read_response()
    assert response.status == 200
    (seen,) = echo.requests
    assert seen.body == b"hello world"
    assert seen.header("content-length") == "11"


def test_echo_reply_is_what_the_client_sees(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    """The raw reader itself: a proxied JSON body arrives intact and framed by Content-Length."""
    wire.route(echo)
    response = gateway_server.get("/api/raw")
    (seen,) = echo.requests
    assert response.body == echo_reply(seen).body
    assert response.header("content-length") == str(len(response.body))


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=204),
        Reply(status=204, headers=[("Content-Length", "0")]),
        Reply(status=304, headers=[("ETag", '"v1"')]),
    ],
    ids=["204", "204-with-length", "304"],
)
def test_a_bodiless_status_gets_no_framing_headers(
    wire: WireConfig, gateway_server: GatewayServer, reply: Reply
):
    """RFC 9110 §8.6: no Content-Length on a 204 (nor a 1xx); RFC 9112 §6.1: no
    Transfer-Encoding either. A 304 may repeat the length of the 200 it stands for, but an
    invented ``Content-Length: 0`` would be wrong."""
    with EchoUpstream(responder=reply) as upstream:
        wire.route(upstream)
        with gateway_server.connect() as conn:
            conn.send(request("GET /api/x HTTP/1.1", "Host: wire.test"))
            response = conn.read_response()
            conn.send(request("GET /api/next HTTP/1.1", "Host: wire.test", "Connection: close"))
            following = conn.read_response()
    assert response.status == reply.status
    assert response.body == b""
    assert response.header("content-length") is None, response.headers
    assert response.header("transfer-encoding") is None, response.headers
    assert following.status == reply.status  # the connection stayed in step


@pytest.mark.parametrize(
    ("gateway_server", "reason"),
    [("wsgi", "Totally Fine"), ("asgi", "OK")],
    indirect=["gateway_server"],
)
def test_the_reason_phrase(wire: WireConfig, gateway_server: GatewayServer, reason: str):
    """WSGI passes the upstream's reason phrase on; ASGI has none, so uvicorn sends the standard
    one (docs/asgi.md, "Reason phrases"). Either way the status is the upstream's."""
    with EchoUpstream(responder=Reply(reason="Totally Fine", body=b"ok")) as upstream:
        wire.route(upstream)
        response = gateway_server.get("/api/x")
    assert (response.status, response.reason, response.body) == (200, reason, b"ok")
