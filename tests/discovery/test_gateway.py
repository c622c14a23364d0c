"""End to end: a request through the gateway to an upstream Consul names, and moving traffic."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from django_gateway.testing.consul import ConsulDouble
from django_gateway.testing.upstreams import EchoUpstream
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db


def test_requests_follow_consul_from_one_echo_to_another(
    client: Any, echo: EchoUpstream, double: ConsulDouble, configure: Callable[..., None]
) -> None:
    double.catalog.register("echo-svc", "echo-1", address=echo.host, port=echo.port)
    make_route(make_service(name="svc", discovery="consul", consul_service="echo-svc"))

    response = client.get("/api/hello?x=1")
    assert response.status_code == 200
    (request,) = echo.wait_for_requests(1)
    assert request.target == "/hello?x=1"

    with EchoUpstream() as second:
        double.catalog.deregister("echo-1")
        double.catalog.register("echo-svc", "echo-2", address=second.host, port=second.port)
        deadline = time.monotonic() + 1.0
        while not second.requests:
            assert time.monotonic() < deadline, "traffic did not move within 1 s"
            assert client.get("/api/moving").status_code == 200
            time.sleep(0.01)
        before = len(echo.requests)
        for _ in range(5):
            assert client.get("/api/moved").status_code == 200
        assert len(echo.requests) == before and len(second.requests) == 6

        double.catalog.set_status("echo-2", "critical")
        deadline = time.monotonic() + 1.0
        while (response := client.get("/api/gone")).status_code != 503:
            assert time.monotonic() < deadline, "the critical instance kept its traffic"
            time.sleep(0.01)
        assert response["Retry-After"] == "5"
        assert response["Content-Type"] == "application/problem+json"
