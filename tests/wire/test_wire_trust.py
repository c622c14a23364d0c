"""``ALLOWED_HOSTS`` and ``TRUSTED_PROXIES`` on the wire, identically in both shells.

These servers run ``tests.wire.strict_settings``: ``ALLOWED_HOSTS`` names ``wire.test`` and
``*.gw.test``, and the loopback peer every client here connects from is a trusted proxy. So the
client address is the right-most untrusted ``X-Forwarded-For`` entry, the proxy's
``X-Forwarded-*`` headers are believed, and rate limits by IP count that address.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from django_gateway.models import RateLimit
from django_gateway.testing.upstreams import EchoUpstream

from .conftest import SERVER_CLASSES, SHELLS, GatewayServer, WireConfig

pytestmark = pytest.mark.wire


def _strict(
    shell: str, server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    cls = SERVER_CLASSES[shell]
    env = {**server_env, "DJANGO_SETTINGS_MODULE": "tests.wire.strict_settings"}
    server = cls(env, tmp_path_factory.mktemp(f"strict-{cls.name}") / f"{cls.name}.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def strict_gunicorn(server_env, tmp_path_factory) -> Iterator[GatewayServer]:
    yield from _strict("wsgi", server_env, tmp_path_factory)


@pytest.fixture(scope="session")
def strict_uvicorn(server_env, tmp_path_factory) -> Iterator[GatewayServer]:
    yield from _strict("asgi", server_env, tmp_path_factory)


@pytest.fixture(params=SHELLS)
def strict_server(request: pytest.FixtureRequest) -> GatewayServer:
    return request.getfixturevalue(
        {"wsgi": "strict_gunicorn", "asgi": "strict_uvicorn"}[request.param]
    )


@pytest.fixture
def strict_wire(
    strict_server: GatewayServer, transactional_db: Any, probe_upstream: EchoUpstream
) -> Iterator[WireConfig]:
    config = WireConfig(strict_server, probe_upstream)
    yield config
    config.clear()


@pytest.mark.parametrize("host", ["wire.test", "api.gw.test", "API.GW.TEST."])
def test_an_allowed_host_is_proxied(
    strict_wire: WireConfig, strict_server: GatewayServer, echo: EchoUpstream, host: str
):
    strict_wire.route(echo)
    assert strict_server.get("/api/x", host=host).status == 200
    assert echo.request_count == 1


@pytest.mark.parametrize("host", ["evil.test", "gw.test.evil.test", "127.0.0.1"])
def test_a_host_outside_allowed_hosts_is_refused_on_a_route(
    strict_wire: WireConfig, strict_server: GatewayServer, echo: EchoUpstream, host: str
):
    strict_wire.route(echo)
    response = strict_server.get("/api/x", host=host)
    assert response.status == 400 and response.is_problem, (response.status, response.body)
    assert response.json()["detail"] == "The Host header is not in ALLOWED_HOSTS."
    assert echo.request_count == 0
    djangos = strict_server.get("/django/x", host=host)  # no route: Django's own refusal
    assert djangos.status == 400 and not djangos.is_problem


def test_the_client_is_the_rightmost_untrusted_forwarded_address(
    strict_wire: WireConfig, strict_server: GatewayServer, echo: EchoUpstream
):
    strict_wire.route(echo)
    for forwarded_for in ("198.51.100.1, 203.0.113.7", "203.0.113.7, 127.0.0.1"):
        response = strict_server.get("/api/x", f"X-Forwarded-For: {forwarded_for}")
        assert response.status == 200
        seen = echo.requests[-1]
        assert seen.header_all("x-real-ip") == ["203.0.113.7"]
        assert seen.header_all("x-forwarded-for") == [f"{forwarded_for}, 127.0.0.1"]


def test_a_trusted_proxys_forwarded_headers_are_believed(
    strict_wire: WireConfig, strict_server: GatewayServer, echo: EchoUpstream
):
    strict_wire.route(echo)
    response = strict_server.get(
        "/api/x",
        "X-Forwarded-For: 203.0.113.7",
        "X-Forwarded-Proto: https",
        "X-Forwarded-Host: public.gw.test",
        "X-Forwarded-Port: 443",
    )
    assert response.status == 200
    (seen,) = echo.requests
    assert seen.header_all("x-forwarded-proto") == ["https"]
    assert seen.header_all("x-forwarded-host") == ["public.gw.test"]
    assert seen.header_all("x-forwarded-port") == ["443"]
    assert seen.header_all("x-forwarded-prefix") == ["/api"]  # the gateway's own


@pytest.mark.skipif(
    not getattr(settings, "REDIS_AVAILABLE", False), reason="needs Redis shared by the gateways"
)
def test_a_rate_limit_by_ip_counts_the_forwarded_client(
    strict_wire: WireConfig, strict_server: GatewayServer, echo: EchoUpstream
):
    route = strict_wire.route(echo, sync=False)
    RateLimit.objects.create(route=route, limit=1, period="minute", limit_by="ip")
    strict_wire.sync()
    clients = ["203.0.113.7", "203.0.113.8", "203.0.113.7"]
    statuses = [
        strict_server.get("/api/x", f"X-Forwarded-For: {client}").status for client in clients
    ]
    assert statuses == [200, 200, 429]
