"""Nothing blocks the ASGI shell's event loop (DESIGN §3; issue #11, item 5).

The gateway runs under a real uvicorn whose loop is in asyncio debug mode with
``slow_callback_duration = 20 ms``: asyncio then logs every callback or task step that held the
loop longer. Each test makes one kind of blocking work slow for real (a slow JWKS issuer, a
black-holed Redis, Consul not answering yet) or, where the real thing is fast on loopback (a
database query, the revision read), adds a delay *inside* the real call, and checks that the
request gets its usual answer while the loop never stalls: the work went to an offload thread.
The first test shows the detector does see a blocked loop.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.handlers.asgi import ASGIHandler

from django_gateway import operations, snapshot
from django_gateway.asgi import GatewayASGIMiddleware
from django_gateway.auth.key_store import KeyStore
from django_gateway.models import Consumer, RateLimit, Service
from django_gateway.testing.consul import ConsulDouble
from django_gateway.testing.state import reset_gateway_state
from django_gateway.testing.upstreams import EchoUpstream, SlowUpstream, json_reply, unused_port
from tests.auth.test_jwks import jwk
from tests.auth.test_jwt import add_credential, sign
from tests.conftest import make_route, make_service
from tests.throttling.conftest import TcpProxy

pytestmark = pytest.mark.usefixtures("transactional_db")

HOST = "127.0.0.1"
SLOW = 0.02  # what the issue calls blocking the loop
DELAY = 0.15  # how long each kind of blocking work takes in these tests


class SlowCallbacks(logging.Handler):
    """asyncio's debug-mode warnings: ``Executing <handle> took 0.150 seconds``."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Executing "):
            self.seen.append(record.getMessage())


class DebugLoopServer:
    """uvicorn serving the gateway on an asyncio loop in debug mode, in a thread."""

    def __init__(self) -> None:
        self.port = unused_port(HOST)
        app = GatewayASGIMiddleware(ASGIHandler())
        config = uvicorn.Config(
            app, host=HOST, port=self.port, lifespan="off", proxy_headers=False, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = loop = asyncio.new_event_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = SLOW
        loop.run_until_complete(self.server.serve())
        loop.close()

    def __enter__(self) -> DebugLoopServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def get(self, path: str, **headers: str) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response


@pytest.fixture
def black_hole() -> Iterator[TcpProxy]:
    """A Redis port that accepts connections and never answers."""
    server = TcpProxy()
    server.mode = "blackhole"
    server.start()
    yield server
    server.stop()


def limits_in(settings: Any, redis: TcpProxy, **gateway: Any) -> None:
    """Rate limits (and failed authentications) counted in the Redis at ``redis``."""
    settings.CACHES = {
        **settings.CACHES,
        "limits": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{HOST}:{redis.port}/0",
        },
    }
    settings.GATEWAY = {"RATE_LIMIT_CACHE_ALIAS": "limits", "RATE_LIMIT_TIMEOUT": DELAY, **gateway}


@pytest.fixture
def slow_callbacks() -> Iterator[SlowCallbacks]:
    handler = SlowCallbacks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def gateway(slow_callbacks: SlowCallbacks, echo: EchoUpstream) -> Iterator[DebugLoopServer]:
    """The server, warmed up on an open route so first-use imports are not counted."""
    make_route(make_service(echo, name="warm"), name="warm", paths=["/warm"])
    with DebugLoopServer() as server:
        for _ in range(3):
            assert server.get("/warm/x").status == 200
        slow_callbacks.seen.clear()
        yield server


def slowed(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
    """``owner.name`` does its real work after :data:`DELAY` seconds."""
    real = getattr(owner, name)

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(DELAY)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, staticmethod(slow) if isinstance(owner, type) else slow)


def test_the_detector_sees_a_blocked_loop(gateway, slow_callbacks):
    assert gateway.loop is not None
    gateway.loop.call_soon_threadsafe(time.sleep, DELAY)
    deadline = time.monotonic() + 2
    while not slow_callbacks.seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert slow_callbacks.seen  # so an empty list below means the loop really never stalled


def test_an_api_key_the_snapshot_has_not_cached(gateway, slow_callbacks, echo, monkeypatch):
    slowed(monkeypatch, KeyStore, "_load")
    make_route(make_service(echo), paths=["/api"], authentication="key")
    _, key = operations.issue_key(Consumer.objects.create(username="alice"), name="ci")
    reset_gateway_state()  # the first snapshot is built off the loop too
    started = time.monotonic()
    assert gateway.get("/api/x", **{"X-API-Key": key}).status == 200
    assert time.monotonic() - started >= DELAY  # the slow lookup did happen
    assert gateway.get("/api/x", **{"X-API-Key": "gw_aaaaaaaaaaaa_" + "b" * 43}).status == 401
    assert slow_callbacks.seen == []


def test_a_jwks_fetch_from_a_slow_issuer(gateway, slow_callbacks, echo, settings):
    settings.GATEWAY = {"AUTH_FAILURE_LIMIT": 0}
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    document = {"keys": [jwk(private, "k1")]}
    with SlowUpstream(DELAY, lambda request: json_reply(document)) as issuer:
        make_route(make_service(echo), paths=["/api"], authentication="jwt")
        add_credential("RS256", jwks_url=f"http://{issuer.host}:{issuer.port}/jwks")
        token = sign(private, "RS256", headers={"kid": "k1"})
        assert gateway.get("/api/x", Authorization=f"Bearer {token}").status == 200
        assert len(issuer.requests) == 1
    assert slow_callbacks.seen == []


def test_failed_authentications_counted_in_a_black_holed_redis(
    gateway, slow_callbacks, echo, settings, black_hole
):
    limits_in(settings, black_hole)
    make_route(make_service(echo), paths=["/api"], authentication="key")
    bad_key = "gw_aaaaaaaaaaaa_" + "c" * 43
    assert [gateway.get("/api/x", **{"X-API-Key": bad_key}).status for _ in range(3)] == [401] * 3
    assert black_hole.accepted  # the failures were sent to Redis, which never answered
    assert slow_callbacks.seen == []


def test_rate_limits_in_a_black_holed_redis(gateway, slow_callbacks, echo, settings, black_hole):
    limits_in(settings, black_hole, RATE_LIMIT_RETRY_INTERVAL=0.0)  # every request tries again
    route = make_route(make_service(echo), paths=["/api"])
    RateLimit.objects.create(route=route, limit=5, period="minute", fault_tolerant=True)
    RateLimit.objects.create(route=route, limit=1, period="hour", fault_tolerant=False)
    reset_gateway_state()
    started = time.monotonic()
    statuses = [gateway.get("/api/x").status for _ in range(3)]
    assert statuses == [503, 503, 503]  # the strict limit cannot be checked
    assert time.monotonic() - started >= 3 * DELAY  # each waited for Redis's timeout
    assert slow_callbacks.seen == []


def test_a_consul_service_waiting_for_its_first_answer(gateway, slow_callbacks, echo, settings):
    with ConsulDouble() as double:
        double.catalog.register("users", "users-1", address=echo.host, port=echo.port)
        double.set_fault("blackhole")
        settings.GATEWAY = {
            "CONSUL_ADDRESS": double.address,
            "CONSUL_COLD_START_TIMEOUT": 2.0,
            "CONSUL_TIMEOUT": 2.0,
            "CONSUL_BACKOFF_MIN": 0.05,
        }
        service = Service.objects.create(name="users", discovery="consul")
        make_route(service, paths=["/api"])
        # Healing drops the black-holed query: the waiting request learns that Consul failed
        # (503, as under WSGI), and the watcher's next query brings the instance.
        threading.Timer(DELAY, double.set_fault, (None,)).start()
        started = time.monotonic()
        assert gateway.get("/api/x").status == 503
        assert time.monotonic() - started >= DELAY  # it waited for Consul, off the loop
        deadline = time.monotonic() + 3
        while gateway.get("/api/x").status != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        reset_gateway_state()
    assert slow_callbacks.seen == []


def test_the_configuration_poll(gateway, slow_callbacks, monkeypatch, settings):
    settings.GATEWAY = {"CONFIG_POLL_INTERVAL": 0.05}
    gateway.get("/warm/x")
    slowed(monkeypatch, snapshot, "current_revision")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert gateway.get("/warm/x").status == 200
    assert slow_callbacks.seen == []
