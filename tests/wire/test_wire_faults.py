"""Upstream faults as the client sees them, identically in both shells (DESIGN §4 "Faults").

Connection refused, reset, or an answer that is not HTTP is a 502; silence past the timeouts is a
504; a service with no instance to send to is a 503 with ``Retry-After``. Every one is a
problem+json body with the request id. Retries go to another instance, idempotent requests only
(or ones the client marks with ``Idempotency-Key``), and an instance that keeps failing is
ejected: it gets no traffic for the cool-down (``EJECT_AFTER_FAILURES`` = 3, ``EJECT_COOLDOWN`` =
10 s by default).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from django_gateway.models import Target
from django_gateway.testing.upstreams import (
    BlackholeUpstream,
    EchoUpstream,
    GarbageUpstream,
    ResetUpstream,
    unused_port,
)

from .client import HOST, assert_problem, request
from .conftest import GatewayServer, WireConfig

pytestmark = pytest.mark.wire

EJECT_AFTER_FAILURES = 3


@dataclass
class Closed:
    """A target with nothing listening (connection refused)."""

    host: str = HOST
    port: int = 0

    def __post_init__(self) -> None:
        self.port = unused_port(self.host)

    def __enter__(self) -> Closed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


@pytest.mark.parametrize(
    ("make_upstream", "status"),
    [
        (Closed, 502),
        (ResetUpstream, 502),
        (lambda: ResetUpstream(after_request=False), 502),
        (GarbageUpstream, 502),
        (BlackholeUpstream, 504),
    ],
    ids=["refused", "reset-after-request", "reset-on-accept", "not-http", "silent"],
)
def test_an_upstream_fault_is_a_problem_with_the_right_status(
    wire: WireConfig, gateway_server: GatewayServer, make_upstream, status: int
):
    with make_upstream() as upstream:
        service = {"retries": 0, "read_timeout": 0.5, "timeout": 1}
        wire.route(upstream, service=service)
        response = gateway_server.get("/api/x")
    assert_problem(response, status)
    assert response.header("retry-after") is None


def test_a_service_without_instances_is_503_with_retry_after(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    service = wire.service(echo)
    Target.objects.filter(service=service).update(enabled=False)
    wire.route(service, paths=["/none"], sync=False)
    wire.route(wire.service(), paths=["/empty"])
    for target in ("/none/x", "/empty/x"):
        response = gateway_server.get(target)
        assert_problem(response, 503)
        assert (response.header("retry-after") or "").isdigit()
    assert echo.connections_accepted == 0


def test_an_idempotent_request_is_retried_on_another_instance(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    with ResetUpstream() as broken:
        wire.route(wire.service(broken, echo, retries=1))
        statuses = [gateway_server.get(f"/api/{n}").status for n in range(2)]
        assert statuses == [200, 200]
        assert broken.request_count >= 1  # one of the two went there first...
        assert [r.target for r in echo.requests] == ["/0", "/1"]  # ...and was retried here


def post(server: GatewayServer, target: str, *headers: str) -> int:
    return server.exchange(
        request(
            f"POST {target} HTTP/1.1",
            "Host: wire.test",
            "Content-Length: 2",
            *headers,
            "Connection: close",
            body=b"{}",
        )
    ).status


def test_a_post_the_upstream_may_have_seen_is_not_retried(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    with ResetUpstream() as broken:
        wire.route(wire.service(broken, echo, retries=1))
        statuses = Counter(post(gateway_server, f"/api/{n}") for n in range(4))
        # Each POST reached exactly one upstream: the reset ones were answered 502, not resent.
        assert broken.request_count >= 1
        assert statuses == {200: echo.request_count, 502: broken.request_count}
        assert echo.request_count + broken.request_count == 4


def test_a_post_is_retried_when_it_never_left_or_carries_an_idempotency_key(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    with ResetUpstream() as broken:
        closed = Closed()
        wire.route(wire.service(closed, echo, retries=1), paths=["/refused"], sync=False)
        wire.route(wire.service(broken, echo, retries=1), paths=["/reset"])
        assert [post(gateway_server, f"/refused/{n}") for n in range(4)] == [200] * 4
        keyed = [post(gateway_server, f"/reset/{n}", f"Idempotency-Key: k-{n}") for n in range(4)]
        assert keyed == [200] * 4
        assert broken.request_count >= 1  # some went there first, and were resent
        assert len(echo.requests) == 8


def test_an_instance_that_keeps_failing_is_ejected(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    with ResetUpstream(after_request=False) as broken:
        wire.route(wire.service(broken, echo, retries=1))
        statuses = [gateway_server.get(f"/api/{n}").status for n in range(12)]
        assert statuses == [200] * 12
        # The broken instance was tried until it had failed EJECT_AFTER_FAILURES times in a
        # row, then left alone for the cool-down.
        assert broken.connections_accepted == EJECT_AFTER_FAILURES
        assert echo.request_count == 12


def test_a_service_whose_only_instance_is_ejected_is_503(
    wire: WireConfig, gateway_server: GatewayServer
):
    with ResetUpstream(after_request=False) as broken:
        wire.route(broken, service={"retries": 0})
        for _ in range(EJECT_AFTER_FAILURES):
            assert_problem(gateway_server.get("/api/x"), 502)
        ejected = gateway_server.get("/api/x")
        assert_problem(ejected, 503)
        assert 1 <= int(ejected.header("retry-after") or 0) <= 10
        assert broken.connections_accepted == EJECT_AFTER_FAILURES
