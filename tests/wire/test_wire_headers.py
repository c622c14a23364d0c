"""What the gateway asserts in headers, both ways, identically in both shells (DESIGN §4).

Request side: ``X-Forwarded-For`` appended to, never replaced; the other ``X-Forwarded-*`` and
``X-Real-IP`` set by the gateway (the client is no trusted proxy here); ``Via`` appended to;
identity headers a client sends removed; one request id, the client's if well formed. Response
side: ``Via`` appended to, the request id the upstream saw, ``Location`` pointing at the
upstream's own origin rewritten to the gateway's, and redirects passed on, never followed.
"""

from __future__ import annotations

import re

import pytest

from django_gateway.testing.upstreams import EchoUpstream, RecordedRequest, Reply, redirect_to

from .conftest import GatewayServer, WireConfig

pytestmark = pytest.mark.wire

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def test_forwarding_headers_are_appended_or_set_by_the_gateway(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gateway_server.get(
        "/api/x",
        "X-Forwarded-For: 203.0.113.7",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: evil.test",
        "X-Forwarded-Port: 443",
        "X-Forwarded-Prefix: /evil",
        "X-Real-IP: 198.51.100.1",
        "Via: 1.0 corporate-proxy",
    )
    assert response.status == 200
    (seen,) = echo.requests
    assert seen.header_all("x-forwarded-for") == ["203.0.113.7, 127.0.0.1"]
    assert seen.header_all("x-real-ip") == ["127.0.0.1"]  # an untrusted peer is the client
    assert seen.header_all("x-forwarded-proto") == ["http"]
    assert seen.header_all("x-forwarded-host") == ["wire.test"]
    assert seen.header_all("x-forwarded-port") == [str(gateway_server.port)]
    assert seen.header_all("x-forwarded-prefix") == ["/api"]
    assert seen.header_all("via") == ["1.0 corporate-proxy, 1.1 django-gateway"]
    assert response.header_all("via") == ["1.1 django-gateway"]


def test_identity_headers_from_the_client_never_pass(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gateway_server.get(
        "/api/x",
        "X-Consumer-ID: 1",
        "X-Consumer-Username: admin",
        "X-Consumer-Groups: admins",
        "X-Credential-Identifier: stolen",
        "X-Authenticated-Userid: root",
        "X-Anonymous-Consumer: false",
        "X-Consumerish: kept",
    )
    assert response.status == 200
    (seen,) = echo.requests
    spoofed = [
        name
        for name, _ in seen.headers
        if name.lower().startswith(("x-consumer-", "x-credential-", "x-authenticated-"))
        or name.lower() == "x-anonymous-consumer"
    ]
    assert spoofed == []
    assert seen.header("x-consumerish") == "kept"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (None, False),
        ("req-2024-06-01.abc:42", True),
        ("has spaces in it", False),
        ("x" * 201, False),
        ("<script>", False),
    ],
    ids=["absent", "well-formed", "spaces", "too-long", "markup"],
)
def test_one_request_id_both_ways(
    wire: WireConfig, gateway_server: GatewayServer, sent: str | None, kept: bool
):
    upstream_id = Reply(headers=[("X-Request-ID", "upstream-own-id")], body=b"ok")
    with EchoUpstream(responder=upstream_id) as upstream:
        wire.route(upstream)
        headers = [f"X-Request-ID: {sent}"] if sent is not None else []
        response = gateway_server.get("/api/x", *headers)
        (seen,) = upstream.requests
    assert response.status == 200
    (forwarded,) = seen.header_all("x-request-id")
    assert response.header_all("x-request-id") == [forwarded]  # the upstream's own is replaced
    if kept:
        assert forwarded == sent
    else:
        assert GENERATED_ID.match(forwarded), forwarded


def test_a_refusal_carries_the_request_id_it_logged(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo, authentication="key")
    response = gateway_server.get("/api/x", "X-Request-ID: trace-me-1")
    assert response.status == 401 and response.is_problem
    assert response.header("x-request-id") == "trace-me-1"
    assert response.json()["request_id"] == "trace-me-1"
    assert echo.request_count == 0


def _redirect(location_for: str):
    def respond(request: RecordedRequest) -> Reply:
        return redirect_to(location_for)

    return respond


@pytest.mark.parametrize(
    ("location", "rewritten"),
    [
        ("{upstream}/next?a=1", "http://wire.test/api/next?a=1"),
        ("/next", "/api/next"),
        ("https://elsewhere.test/x", "https://elsewhere.test/x"),
    ],
    ids=["upstream-origin", "relative", "foreign"],
)
def test_redirects_are_passed_on_with_the_upstreams_origin_rewritten(
    wire: WireConfig, gateway_server: GatewayServer, location: str, rewritten: str
):
    with EchoUpstream() as upstream:
        upstream.responder = redirect_to(location.format(upstream=upstream.url))
        wire.route(upstream)
        response = gateway_server.get("/api/start")
        assert upstream.request_count == 1  # never followed
    assert response.status == 302
    assert response.header_all("location") == [rewritten]
