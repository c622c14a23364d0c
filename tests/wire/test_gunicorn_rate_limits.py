"""Rate limits hold exactly across processes: two gunicorn gateways sharing one Redis.

4 client processes x 8 threads send 400 requests, alternating between the two gateways, at a
route limited to 100 per minute. Exactly 100 are admitted, and the upstream's own count agrees:
no race between concurrent requests, and no per-process counting.
"""

from __future__ import annotations

import http.client
import multiprocessing
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from django_gateway.models import RateLimit
from django_gateway.testing.upstreams import EchoUpstream
from tests.marks import forks_like_gunicorn

from .conftest import GunicornServer, WireConfig

pytestmark = pytest.mark.wire

PROCESSES, THREADS, REQUESTS = 4, 8, 400


def _get(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("GET", "/limited/x", headers={"Host": "wire.test"})
        return connection.getresponse().status
    finally:
        connection.close()


def _client_process(ports: tuple[int, int], count: int) -> list[int]:
    """One client process: ``count`` requests over THREADS threads, alternating gateways."""
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(_get, [ports[i % 2] for i in range(count)]))


@pytest.fixture
def second_gateway(gunicorn: GunicornServer, tmp_path):
    server = GunicornServer(gunicorn.env, tmp_path / "second-gunicorn.log")
    server.start()
    yield server
    server.stop()


@forks_like_gunicorn
@pytest.mark.skipif(
    not getattr(settings, "REDIS_AVAILABLE", False), reason="needs Redis shared by the gateways"
)
def test_exactly_the_limit_is_admitted_across_processes_and_gateways(
    wire: WireConfig,
    gunicorn: GunicornServer,
    second_gateway: GunicornServer,
    probe_upstream: EchoUpstream,
):
    with EchoUpstream() as echo:
        route = wire.route(echo, paths=["/limited"], sync=False)
        RateLimit.objects.create(route=route, limit=100, period="minute", limit_by="ip")
        wire.sync()
        WireConfig(second_gateway, probe_upstream).sync()  # both gateways now hold the limit
        ports = (gunicorn.port, second_gateway.port)
        with multiprocessing.get_context("fork").Pool(PROCESSES) as pool:
            results = pool.starmap(_client_process, [(ports, REQUESTS // PROCESSES)] * PROCESSES)
        statuses = Counter(status for result in results for status in result)
        assert statuses == {200: 100, 429: REQUESTS - 100}
        assert echo.request_count == 100
