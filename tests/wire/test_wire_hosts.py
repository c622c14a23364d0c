"""Host spellings through a real server, in both shells: one that Django accepts never selects
another route.

``gw.test.`` (with the root dot), ``GW.TEST`` and ``gw.test.:8080`` are the same host to Django's
``ALLOWED_HOSTS``; if the route table compared them literally, the trailing dot would skip a
host's own route (and its authentication) for a host-less one.
"""

from __future__ import annotations

import pytest

from django_gateway.testing.upstreams import EchoUpstream

from .client import request
from .conftest import GatewayServer, WireConfig

pytestmark = pytest.mark.wire


@pytest.fixture
def secure_and_open(wire: WireConfig, echo: EchoUpstream) -> None:
    """``/s`` asks for a key on gw.test and *.gw.test, and is open on every other host."""
    service = wire.service(echo)
    wire.route(service, name="open", paths=["/s", "/h/long"], sync=False)
    wire.route(
        service,
        name="secure",
        hosts=["gw.test"],
        paths=["/s", "/h"],
        authentication="key",
        sync=False,
    )
    wire.route(service, name="wild", hosts=["*.gw.test"], paths=["/s"], authentication="key")


@pytest.mark.parametrize(
    ("host", "target"),
    [
        ("gw.test.", "/s"),
        ("GW.Test.", "/s"),
        ("gw.test.:8080", "/s"),
        ("a.gw.test.", "/s"),
        ("A.GW.TEST", "/s"),
        ("gw.test.", "/h/long/x"),  # the host's shorter prefix still beats a host-less longer one
    ],
)
def test_a_host_spelling_cannot_skip_the_hosts_route(
    secure_and_open: None, gateway_server: GatewayServer, echo: EchoUpstream, host: str, target: str
):
    response = gateway_server.get(target, host=host)
    assert response.status == 401, (response.status, response.body)
    assert response.header("www-authenticate") == 'Key realm="django-gateway"'
    assert echo.request_count == 0


def test_other_hosts_still_get_the_open_route(
    secure_and_open: None, gateway_server: GatewayServer, echo: EchoUpstream
):
    assert gateway_server.get("/s", host="other.test.").status == 200
    assert echo.requests[-1].header("x-forwarded-host") == "other.test"


@pytest.mark.parametrize("host", ["gw.test..", "gw..test", ".gw.test"])
def test_a_host_with_an_empty_label_is_refused(
    secure_and_open: None, gateway_server: GatewayServer, echo: EchoUpstream, host: str
):
    response = gateway_server.get("/s", host=host)
    assert response.status == 400 and response.is_problem
    assert response.json()["detail"] == "The Host header is not a valid host name."
    assert echo.request_count == 0


@pytest.mark.parametrize("gateway_server", ["wsgi"], indirect=True)
def test_absolute_form_target_naming_another_host_is_refused(
    secure_and_open: None, gateway_server: GatewayServer, echo: EchoUpstream
):
    """gunicorn routes by the Host header, a proxy in front may route by the target's authority:
    when the two disagree, neither is believed."""
    response = gateway_server.exchange(
        request("GET http://gw.test/s HTTP/1.1", "Host: other.test", "Connection: close")
    )
    assert response.status == 400 and response.is_problem
    assert "another host" in response.json()["detail"]
    assert echo.request_count == 0


@pytest.mark.parametrize("gateway_server", ["asgi"], indirect=True)
def test_under_asgi_an_absolute_form_target_is_routed_by_host(
    secure_and_open: None, gateway_server: GatewayServer, echo: EchoUpstream
):
    """uvicorn hands the application only the target's path, so the authority cannot be
    compared (docs/asgi.md, "Absolute-form targets"): routing follows Host, as gunicorn's
    does, here the open route of other.test."""
    response = gateway_server.exchange(
        request("GET http://gw.test/s HTTP/1.1", "Host: other.test", "Connection: close")
    )
    assert response.status == 200
    assert echo.request_count == 1


def test_absolute_form_target_agreeing_with_host_is_routed_by_it(
    secure_and_open: None, gateway_server: GatewayServer, echo: EchoUpstream
):
    response = gateway_server.exchange(
        request("GET http://GW.test./s HTTP/1.1", "Host: gw.test", "Connection: close")
    )
    assert response.status == 401  # the gw.test route, with its authentication
    assert echo.request_count == 0


@pytest.mark.parametrize(
    "target", ["/api/..%2Fadmin", "/api/%2F..%2Fadmin", "/api%2F..%2Fadmin", "/api/..%5Cadmin"]
)
def test_an_encoded_slash_cannot_lift_a_request_out_of_its_route(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream, target: str
):
    wire.route(echo)
    response = gateway_server.get(target)
    assert response.status == 400 and response.is_problem, (response.status, response.body)
    assert echo.request_count == 0
