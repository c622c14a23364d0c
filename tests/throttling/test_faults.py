"""Redis refusing, black-holed, stopped and restarted: what limited routes answer, and how fast.

The rate-limit cache here is a second django-redis alias pointing at a real socket that misbehaves:
a port nobody listens on, a server that accepts and never answers, and a real ``redis-server``
process the test stops and starts again on the same port.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import time

import pytest
from django.conf import settings
from django.test import override_settings

from django_gateway.models import RateLimit
from django_gateway.runtime import runtime
from django_gateway.testing.rawservers import LoopbackServer
from django_gateway.testing.upstreams import unused_port
from django_gateway.throttling.stage import UNAVAILABLE_ADMITTED, UNAVAILABLE_REFUSED
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db


class SilentServer(LoopbackServer):
    """Accepts connections and reads whatever arrives, never answering: a black-holed Redis."""

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass


def limits_on(port: int, **gateway):
    """Point the rate-limit cache at 127.0.0.1:port (the configuration version stays on default)."""
    caches = {
        **settings.CACHES,
        "limits": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
        },
    }
    return override_settings(
        CACHES=caches,
        GATEWAY={**settings.GATEWAY, "RATE_LIMIT_CACHE_ALIAS": "limits", **gateway},
    )


@pytest.fixture
def route(echo):
    route = make_route(make_service(echo), paths=["/api"])
    RateLimit.objects.create(route=route, limit=2, period="minute", limit_by="ip")
    return route


def timed_get(client, path="/api/x"):
    started = time.perf_counter()
    response = client.get(path)
    return response, time.perf_counter() - started


def test_refused_redis_lets_fault_tolerant_limits_through_without_headers(client, route, caplog):
    caplog.set_level(logging.WARNING, logger="django_gateway.throttling.stage")
    with limits_on(unused_port()):
        for _ in range(4):  # over the limit of 2: nothing counts while Redis is away
            response, elapsed = timed_get(client)
            assert response.status_code == 200
            assert "RateLimit-Limit" not in response
            assert elapsed < 0.5
    assert runtime.counters.get(UNAVAILABLE_ADMITTED) == 4
    warnings = [r for r in caplog.records if "not enforced" in r.getMessage()]
    assert len(warnings) == 1  # one warning per interval, not one per request


def test_refused_redis_answers_503_for_strict_limits(client, route, echo):
    RateLimit.objects.update(fault_tolerant=False)
    with limits_on(unused_port()):
        response = client.get("/api/x")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "1"
    assert runtime.counters.get(UNAVAILABLE_REFUSED) == 1
    assert echo.requests == []


def test_one_strict_limit_among_tolerant_ones_wins(client, route):
    RateLimit.objects.create(route=route, limit=100, period="hour", fault_tolerant=False)
    with limits_on(unused_port()):
        assert client.get("/api/x").status_code == 503


def test_black_holed_redis_costs_one_timeout_then_nothing(client, route):
    with SilentServer() as hole, limits_on(hole.port, RATE_LIMIT_TIMEOUT=0.1):
        first, first_elapsed = timed_get(client)
        later = [timed_get(client) for _ in range(5)]
    assert first.status_code == 200 and "RateLimit-Limit" not in first
    assert 0.09 <= first_elapsed < 0.5  # bounded by the socket timeout, no redis-py retries
    assert all(r.status_code == 200 and elapsed < 0.05 for r, elapsed in later)  # the breaker


def test_black_holed_redis_answers_503_for_strict_limits_within_the_timeout(client, route):
    RateLimit.objects.update(fault_tolerant=False)
    with SilentServer() as hole, limits_on(hole.port, RATE_LIMIT_TIMEOUT=0.1):
        response, elapsed = timed_get(client)
    assert response.status_code == 503 and elapsed < 0.5


@pytest.fixture
def redis_server():
    """A real redis-server on a port of its own, which the test may stop and start again."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs the redis-server binary to stop and restart a Redis")
    port = unused_port()
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    process = None

    def start():
        nonlocal process
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop():
        process.terminate()
        process.wait(5)

    start()
    yield port, start, stop
    if process.poll() is None:
        stop()


def test_limits_apply_again_as_soon_as_redis_is_back(client, route, redis_server):
    port, start, stop = redis_server
    with limits_on(port, RATE_LIMIT_RETRY_INTERVAL=0.2):
        assert [client.get("/api/x").status_code for _ in range(3)] == [200, 200, 429]
        stop()
        during = [timed_get(client) for _ in range(3)]
        assert all(r.status_code == 200 and "RateLimit-Limit" not in r for r, _ in during)
        assert all(elapsed < 0.5 for _, elapsed in during)
        start()  # an empty Redis: counting starts afresh
        time.sleep(0.25)  # the breaker's interval
        again = [client.get("/api/x") for _ in range(3)]
    assert [r.status_code for r in again] == [200, 200, 429]
    assert again[0]["RateLimit-Remaining"] == "1"


def test_a_location_redis_cannot_use_is_redis_down_not_a_500(client, route, caplog):
    """A LOCATION redis-py refuses (found by the benchmark: a URL rebuilt without its //) is
    logged once and handled by the fault policy, never an Internal Server Error."""
    caches = {
        **settings.CACHES,
        "limits": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "nonsense://x"},
    }
    gateway = {**settings.GATEWAY, "RATE_LIMIT_CACHE_ALIAS": "limits"}
    with override_settings(CACHES=caches, GATEWAY=gateway):
        assert client.get("/api/x").status_code == 200  # fault tolerant: admitted
        RateLimit.objects.update(fault_tolerant=False)
        runtime.snapshots.invalidate()
        response = client.get("/api/x")
    assert response.status_code == 503 and response["Content-Type"] == "application/problem+json"
    assert "Rate limits cannot be counted" in caplog.text
