"""Framing, headers and paths on the wire, through gunicorn (DESIGN §4 "Proxying").

Every case looks from both ends: the bytes the client got back, and what the upstream received
(or that it received nothing at all).
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

from .conftest import GunicornServer, WireConfig, request

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


def assert_problem(response, status: int) -> None:
    assert response.status == status, (response.status, response.body)
    assert response.is_problem, response.headers
    problem = response.json()
    assert problem["status"] == status
    assert problem["request_id"] == response.header("x-request-id")


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


# -- framing the WSGI server lets through ------------------------------------------------------


def test_gzip_chunked_transfer_encoding_is_refused(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gunicorn.exchange(
        request(
            "POST /api/upload HTTP/1.1",
            "Host: wire.test",
            "Transfer-Encoding: gzip, chunked",
            body=chunked(gzip.compress(b"hello")),
        )
    )
    assert response.status in (400, 501)
    assert response.is_problem
    assert echo.request_count == 0
    assert echo.connections_accepted == 0


def test_chunked_with_content_length_is_refused(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gunicorn.exchange(
        request(
            "POST /api/upload HTTP/1.1",
            "Host: wire.test",
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
            body=chunked(b"hello"),
        )
    )
    assert 400 <= response.status < 500  # gunicorn refuses it itself, before the gateway
    assert echo.request_count == 0
    assert echo.connections_accepted == 0


def test_http11_request_without_host_is_refused(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gunicorn.exchange(request("GET /api/x HTTP/1.1", "Connection: close"))
    assert_problem(response, 400)
    assert echo.request_count == 0


def test_http10_request_without_host_is_proxied(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    """HTTP/1.0 has no Host requirement: the refusal above is about the version, not a glitch."""
    wire.route(echo)
    response = gunicorn.exchange(request("GET /api/x HTTP/1.0"))
    assert response.status == 200
    (seen,) = echo.requests
    assert seen.target == "/x"
    assert seen.header("host") == f"127.0.0.1:{echo.port}"


# -- bodies ------------------------------------------------------------------------------------


def test_chunked_request_body_is_streamed_chunked(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    wire.route(echo)
    pieces = [os.urandom(size) for size in (1, 100, 65536, 300_000, 7)]
    body = b"".join(pieces)
    response = gunicorn.exchange(
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
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    wire.route(echo, max_body_size=1000)
    response = gunicorn.exchange(
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
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    wire.route(echo, max_body_size=100_000)
    response = gunicorn.exchange(
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
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gunicorn.exchange(
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
    wire: WireConfig, gunicorn: GunicornServer
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
        response = gunicorn.exchange(
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
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    service = wire.service(echo)
    wire.route(service, paths=["/api"], sync=False)
    wire.route(service, paths=["/kept"], preserve_host=True)
    for target in ("/api/x", "/kept/x"):
        response = gunicorn.exchange(
            request(f"GET {target} HTTP/1.1", "Host: Gateway.Example.:8080", "Connection: close")
        )
        assert response.status == 200
    rewritten, preserved = echo.requests
    # The client's spelling reaches the upstream in the canonical form the routes matched.
    assert rewritten.header_all("host") == [f"127.0.0.1:{echo.port}"]
    assert rewritten.header("x-forwarded-host") == "gateway.example:8080"
    assert preserved.header_all("host") == ["gateway.example:8080"]


# -- paths and query strings -------------------------------------------------------------------

FORBIDDEN_ESCAPES = ["%2F", "%2f", "%5C", "%5c", "%00", "%0d%0a", "%0A"]


@pytest.mark.parametrize("escape", FORBIDDEN_ESCAPES)
def test_forbidden_escape_in_a_routed_path_is_400(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream, escape: str
):
    wire.route(echo)
    response = gunicorn.get(f"/api/a{escape}b")
    assert_problem(response, 400)
    assert echo.request_count == 0


@pytest.mark.parametrize("escape", FORBIDDEN_ESCAPES)
def test_forbidden_escape_outside_routes_is_djangos_business(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream, escape: str
):
    wire.route(echo)
    response = gunicorn.get(f"/django/a{escape}b")
    assert not response.is_problem
    # Django's own answer: its view, or its 404 where its URL pattern does not take the path.
    assert (response.status, response.header("content-type")) in {
        (200, "text/plain"),
        (404, "text/html; charset=utf-8"),
    }
    assert echo.request_count == 0


def test_dot_segments_cannot_leave_a_route(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gunicorn.get("/api/../admin")  # routed as /admin: no route, so Django's
    assert not response.is_problem
    assert (response.header("content-type") or "").startswith("text/html")
    assert echo.request_count == 0


def test_dot_segments_are_routed_on_the_canonical_path(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    with EchoUpstream() as internal:
        wire.route(echo, sync=False)
        wire.route(internal, paths=["/internal"])
        response = gunicorn.get("/api/../internal/x")
        assert response.status == 200
        assert echo.request_count == 0
        assert [r.target for r in internal.requests] == ["/x"]


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        ("/api/x/../y", "/y"),
        ("/api/x/%2E%2E/y", "/y"),
        ("/api//a/./b/", "/a/b/"),
        ("/api/caf%C3%A9/a%20b", "/caf%C3%A9/a%20b"),
    ],
)
def test_canonical_path_is_forwarded(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream, target: str, forwarded: str
):
    wire.route(echo)
    response = gunicorn.get(target)
    assert response.status == 200
    assert [r.target for r in echo.requests] == [forwarded]


def test_absolute_form_target_is_forwarded_in_origin_form(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gunicorn.exchange(
        request(
            "GET http://wire.test/api/x/../y?q=%2F HTTP/1.1", "Host: wire.test", "Connection: close"
        )
    )
    assert response.status == 200
    assert [r.target for r in echo.requests] == ["/y?q=%2F"]
    refused = gunicorn.exchange(
        request("GET http://wire.test/api/a%2Fb HTTP/1.1", "Host: wire.test", "Connection: close")
    )
    assert_problem(refused, 400)
    assert echo.request_count == 1


def test_query_string_is_forwarded_byte_for_byte(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gunicorn.get("/api/q?a=%2F&b=1&&c")
    assert response.status == 200
    assert [r.target for r in echo.requests] == ["/q?a=%2F&b=1&&c"]


# -- response headers and bodies ---------------------------------------------------------------


def test_repeated_set_cookie_headers_stay_separate(wire: WireConfig, gunicorn: GunicornServer):
    cookies = ["a=1; Path=/", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; HttpOnly", "c=3"]
    reply = Reply(headers=[("Set-Cookie", c) for c in cookies], body=b"ok")
    with EchoUpstream(responder=reply) as upstream:
        wire.route(upstream)
        response = gunicorn.get("/api/login")
    assert response.status == 200
    assert response.header_all("set-cookie") == cookies


@pytest.mark.parametrize("size", [2_000, 300_000], ids=["buffered", "streamed"])
def test_content_encoding_passes_untouched(wire: WireConfig, gunicorn: GunicornServer, size: int):
    payload = gzip.compress(os.urandom(size // 2) * 2)
    reply = Reply(
        headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        body=payload,
    )
    with EchoUpstream(responder=reply) as upstream:
        wire.route(upstream)
        response = gunicorn.get("/api/data", "Accept-Encoding: gzip")
        (seen,) = upstream.requests
    assert response.status == 200
    assert response.header("content-encoding") == "gzip"
    assert response.body == payload
    assert seen.header("accept-encoding") == "gzip"


@pytest.mark.parametrize("size", [1_234, 500_000], ids=["small", "large"])
def test_head_response_has_content_length_and_no_body(
    wire: WireConfig, gunicorn: GunicornServer, size: int
):
    reply = Reply(headers=[("Content-Type", "application/octet-stream")], body=b"z" * size)
    with EchoUpstream(responder=reply) as upstream:
        wire.route(upstream)
        with gunicorn.connect() as conn:
            conn.send(request("HEAD /api/file HTTP/1.1", "Host: wire.test", "Connection: close"))
            response = conn.read_response(until_eof=True)
        (seen,) = upstream.requests
    assert response.status == 200
    assert response.header("content-length") == str(size)
    assert response.body == b""
    assert seen.method == "HEAD"


def test_two_requests_on_one_keep_alive_connection(
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    wire.route(echo)
    with gunicorn.connect() as conn:
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


def test_keep_alive_after_a_streamed_response(wire: WireConfig, gunicorn: GunicornServer):
    """A chunked upstream body is re-framed by gunicorn; the next request on the connection
    must still parse, so the framing of the first one was exact."""
    download = stream_bytes(300_000, 7_000)

    def responder(seen: RecordedRequest) -> Reply:
        return download if seen.path == "/stream" else echo_reply(seen)

    with EchoUpstream(responder=responder) as upstream:
        wire.route(upstream)
        with gunicorn.connect() as conn:
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


def test_expect_100_continue(wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream):
    wire.route(echo)
    with gunicorn.connect() as conn:
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
    wire: WireConfig, gunicorn: GunicornServer, echo: EchoUpstream
):
    """The raw reader itself: a proxied JSON body arrives intact and framed by Content-Length."""
    wire.route(echo)
    response = gunicorn.get("/api/raw")
    (seen,) = echo.requests
    assert response.body == echo_reply(seen).body
    assert response.header("content-length") == str(len(response.body))
