"""Paths and query strings on the wire, in both shells (DESIGN §4 "Proxying", paths).

The gateway routes on the canonical path (dot segments removed, slashes merged, decoded) and
forwards exactly that path, re-encoded, so a route can never be escaped; encoded slashes, NUL and
CR/LF in a path a route covers are refused with 400. The query string goes through byte for byte.
"""

from __future__ import annotations

import pytest

from django_gateway.testing.upstreams import EchoUpstream

from .client import assert_problem, request
from .conftest import GatewayServer, WireConfig

pytestmark = pytest.mark.wire

FORBIDDEN_ESCAPES = ["%2F", "%2f", "%5C", "%5c", "%00", "%0d%0a", "%0A"]


@pytest.mark.parametrize("escape", FORBIDDEN_ESCAPES)
def test_forbidden_escape_in_a_routed_path_is_400(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream, escape: str
):
    wire.route(echo)
    response = gateway_server.get(f"/api/a{escape}b")
    assert_problem(response, 400)
    assert echo.request_count == 0


@pytest.mark.parametrize("escape", FORBIDDEN_ESCAPES)
def test_forbidden_escape_outside_routes_is_djangos_business(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream, escape: str
):
    wire.route(echo)
    response = gateway_server.get(f"/django/a{escape}b")
    assert not response.is_problem
    # Django's own answer: its view, or its 404 where its URL pattern does not take the path.
    assert (response.status, response.header("content-type")) in {
        (200, "text/plain"),
        (404, "text/html; charset=utf-8"),
    }
    assert echo.request_count == 0


def test_dot_segments_cannot_leave_a_route(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gateway_server.get("/api/../admin")  # routed as /admin: no route, so Django's
    assert not response.is_problem
    assert (response.header("content-type") or "").startswith("text/html")
    assert echo.request_count == 0


def test_dot_segments_are_routed_on_the_canonical_path(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    with EchoUpstream() as internal:
        wire.route(echo, sync=False)
        wire.route(internal, paths=["/internal"])
        response = gateway_server.get("/api/../internal/x")
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
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream, target: str, forwarded: str
):
    wire.route(echo)
    response = gateway_server.get(target)
    assert response.status == 200
    assert [r.target for r in echo.requests] == [forwarded]


def test_absolute_form_target_is_forwarded_in_origin_form(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gateway_server.exchange(
        request(
            "GET http://wire.test/api/x/../y?q=%2F HTTP/1.1", "Host: wire.test", "Connection: close"
        )
    )
    assert response.status == 200
    assert [r.target for r in echo.requests] == ["/y?q=%2F"]
    refused = gateway_server.exchange(
        request("GET http://wire.test/api/a%2Fb HTTP/1.1", "Host: wire.test", "Connection: close")
    )
    assert_problem(refused, 400)
    assert echo.request_count == 1


def test_query_string_is_forwarded_byte_for_byte(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo)
    response = gateway_server.get("/api/q?a=%2F&b=1&&c")
    assert response.status == 200
    assert [r.target for r in echo.requests] == ["/q?a=%2F&b=1&&c"]
