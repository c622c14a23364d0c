"""Rate limits hold exactly across shells: a WSGI gateway and an ASGI gateway sharing one Redis.

Both shells count in the same Redis keys with the same script (docs/asgi.md), so a deployment
that runs gunicorn and uvicorn processes side by side behind one load balancer has one limit, not
one per shell. 4 client processes x 8 threads send 400 requests, alternating between gunicorn
and uvicorn, at a route limited to 100 per minute by IP. Counted from the clients: exactly 100
admitted, 300 refused with 429, each gateway answering its half. Counted from the upstream:
exactly 100 requests. Counted by the limiter: the 100 admitted requests saw each remaining count
from 99 down to 0 exactly once, whichever shell admitted them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

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
def both_shells(
    gunicorn: GatewayServer,
    uvicorn: GatewayServer,
    transactional_db: Any,
    probe_upstream: EchoUpstream,
) -> Iterator[tuple[WireConfig, WireConfig]]:
    wsgi, asgi = WireConfig(gunicorn, probe_upstream), WireConfig(uvicorn, probe_upstream)
    yield wsgi, asgi
    wsgi.clear()


def test_exactly_the_limit_is_admitted_across_a_wsgi_and_an_asgi_gateway(
    both_shells: tuple[WireConfig, WireConfig], gunicorn: GatewayServer, uvicorn: GatewayServer
):
    wsgi, asgi = both_shells
    with EchoUpstream() as echo:
        route = wsgi.route(echo, paths=["/limited"], sync=False)
        RateLimit.objects.create(route=route, limit=LIMIT, period="minute", limit_by="ip")
        wsgi.sync()
        asgi.sync()  # both gateways now hold the limit
        outcomes = hammer((gunicorn.port, uvicorn.port), "/limited/x", REQUESTS)
        upstream_count = echo.request_count

    assert Counter(o.status for o in outcomes) == {200: LIMIT, 429: REQUESTS - LIMIT}
    assert upstream_count == LIMIT
    assert Counter(o.port for o in outcomes) == {gunicorn.port: 200, uvicorn.port: 200}

    admitted = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status == 429]
    assert sorted(int(o.remaining or -1) for o in admitted) == list(range(LIMIT))
    for outcome in outcomes:
        assert outcome.limit == str(LIMIT), outcome
    for outcome in refused:
        assert outcome.remaining == "0" and int(outcome.retry_after or 0) >= 1, outcome
    # Both shells admitted and refused: the shared count, not a per-shell one, decided.
    by_shell = Counter((o.port, o.status) for o in outcomes)
    assert all(by_shell[(port, 429)] > 0 for port in (gunicorn.port, uvicorn.port)), by_shell
