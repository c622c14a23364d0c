"""Configuration committed while a server runs goes live within the poll interval, no restart.

DESIGN §3/§5: saving a route bumps the shared version on commit; every process checks it at most
every ``CONFIG_POLL_INTERVAL`` (0.2 s in the test settings) and swaps in a rebuilt snapshot.
"""

from __future__ import annotations

import pytest

from django_gateway.testing.upstreams import EchoUpstream

from .client import wait_until
from .conftest import GatewayServer, WireConfig

pytestmark = pytest.mark.wire

#: "Within ~1 s": the poll interval is 0.2 s, so this leaves room for a loaded machine.
GO_LIVE = 1.0
PREFIX = "/django/live"
PATH = f"{PREFIX}/x"


def answers_from(gateway_server: GatewayServer, upstream: EchoUpstream) -> bool:
    """Sends one request; true when ``upstream`` got it (as ``/x``, the prefix stripped)."""
    before = upstream.request_count
    response = gateway_server.get(PATH)
    return (
        response.status == 200
        and upstream.request_count == before + 1
        and upstream.requests[-1].target == "/x"
    )


def falls_through(gateway_server: GatewayServer) -> bool:
    response = gateway_server.get(PATH)
    return response.status == 200 and response.body == f"django:GET:{PATH}".encode()


def assert_stays_with_django(gateway_server: GatewayServer, upstream: EchoUpstream) -> None:
    """Once one request fell through, every later one does: the old snapshot is gone for good."""
    count = upstream.request_count
    for _ in range(5):
        assert falls_through(gateway_server)
    assert upstream.request_count == count


def test_route_changes_go_live_without_a_restart(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo, paths=["/elsewhere"])  # the gateway is active, but PATH is not routed
    master, workers = gateway_server.master_pid, gateway_server.worker_pids()
    assert falls_through(gateway_server)

    route = wire.route(echo, paths=[PREFIX], sync=False)
    wait_until(lambda: answers_from(gateway_server, echo), GO_LIVE)

    with EchoUpstream() as replacement:
        target = route.service.targets.get()
        target.port = replacement.port
        target.save()
        wait_until(lambda: answers_from(gateway_server, replacement), GO_LIVE)

        route.enabled = False
        route.save()
        wait_until(lambda: falls_through(gateway_server), GO_LIVE)
        assert_stays_with_django(gateway_server, replacement)
        count = replacement.request_count

        route.enabled = True
        route.save()
        wait_until(lambda: answers_from(gateway_server, replacement), GO_LIVE)
        assert replacement.request_count == count + 1  # nothing reached it while disabled

    assert (gateway_server.master_pid, gateway_server.worker_pids()) == (master, workers)


def test_disabling_the_service_falls_through_to_django(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo, paths=["/elsewhere"], sync=False)
    route = wire.route(echo, paths=[PREFIX])
    assert answers_from(gateway_server, echo)

    service = route.service
    service.enabled = False
    service.save()
    wait_until(lambda: falls_through(gateway_server), GO_LIVE)
    assert_stays_with_django(gateway_server, echo)


def test_deleting_the_route_falls_through_to_django(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo, paths=["/elsewhere"], sync=False)
    route = wire.route(echo, paths=[PREFIX])
    assert answers_from(gateway_server, echo)

    route.delete()
    wait_until(lambda: falls_through(gateway_server), GO_LIVE)
    assert_stays_with_django(gateway_server, echo)
