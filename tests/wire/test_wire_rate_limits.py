"""Rate limits hold exactly across processes: two gateways of one shell sharing one Redis.

4 client processes x 8 threads send 400 requests, alternating between two gateway processes
(two gunicorns, or two uvicorns), at a route limited to 100 per minute. Exactly 100 are
admitted, and the upstream's own count agrees: no race between concurrent requests, and no
per-process counting. ``test_wire_mixed_limits.py`` does the same with one of each shell.
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.conf import settings

from django_gateway.models import RateLimit
from django_gateway.testing.upstreams import EchoUpstream
from tests.marks import forks_like_gunicorn

from .conftest import GatewayServer, WireConfig
from .load import hammer

pytestmark = [
    pytest.mark.wire,
    forks_like_gunicorn,
    pytest.mark.skipif(
        not getattr(settings, "REDIS_AVAILABLE", False), reason="needs Redis shared by the gateways"
    ),
]

REQUESTS, LIMIT = 400, 100


@pytest.fixture
def second_gateway(gateway_server: GatewayServer, tmp_path):
    server = type(gateway_server)(
        gateway_server.env, tmp_path / f"second-{gateway_server.name}.log"
    )
    server.start()
    yield server
    server.stop()


def test_exactly_the_limit_is_admitted_across_processes_and_gateways(
    wire: WireConfig,
    gateway_server: GatewayServer,
    second_gateway: GatewayServer,
    probe_upstream: EchoUpstream,
):
    with EchoUpstream() as echo:
        route = wire.route(echo, paths=["/limited"], sync=False)
        RateLimit.objects.create(route=route, limit=LIMIT, period="minute", limit_by="ip")
        wire.sync()
        WireConfig(second_gateway, probe_upstream).sync()  # both gateways now hold the limit
        outcomes = hammer((gateway_server.port, second_gateway.port), "/limited/x", REQUESTS)
        statuses = Counter(outcome.status for outcome in outcomes)
        assert statuses == {200: LIMIT, 429: REQUESTS - LIMIT}
        assert echo.request_count == LIMIT
