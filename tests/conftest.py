"""Fixtures shared by the suite: real upstream servers on loopback and configuration helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from django_gateway.config import CompiledRoute, ServiceConfig
from django_gateway.models import Route, Service, Target
from django_gateway.runtime import runtime
from django_gateway.testing.state import reset_gateway_state
from django_gateway.testing.upstreams import EchoUpstream


@pytest.fixture(autouse=True)
def fresh_gateway_state() -> Iterator[None]:
    """Each test starts with no snapshot, no ejections, an empty connection pool and no
    rate-limit counts (row ids come back after a rollback, and counter keys hold them)."""
    reset_gateway_state()
    yield
    reset_gateway_state()
    if getattr(settings, "REDIS_AVAILABLE", False):
        from django_redis import get_redis_connection

        from django_gateway.throttling.engine import key_prefix

        client = get_redis_connection("default")
        keys = list(client.scan_iter(match=f"{key_prefix()}:*", count=1000))
        if keys:
            client.delete(*keys)


CONSUL_ENVIRONMENT = (
    "CONSUL_HTTP_ADDR",
    "CONSUL_HTTP_TOKEN",
    "CONSUL_HTTP_SSL",
    "CONSUL_HTTP_SSL_VERIFY",
)


@pytest.fixture(autouse=True)
def no_consul_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """py-consul reads CONSUL_HTTP_* on its own and lets CONSUL_HTTP_TOKEN override an explicit
    token (CONSUL_FACTS §2.2): no test may depend on the environment it runs in."""
    for name in CONSUL_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session", autouse=True)
def clean_redis_keys() -> Iterator[None]:
    """The suite writes only under its own key prefix, and removes those keys when it ends."""
    yield
    if getattr(settings, "REDIS_AVAILABLE", False):
        from django_redis import get_redis_connection

        client = get_redis_connection("default")
        prefix = settings.CACHES["default"]["KEY_PREFIX"]
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)


@pytest.fixture
def echo() -> Iterator[EchoUpstream]:
    with EchoUpstream() as server:
        yield server


def make_service(*upstreams: Any, name: str = "svc", **fields: Any) -> Service:
    """A service whose targets are the given servers (anything with ``.host`` and ``.port``)."""
    service = Service.objects.create(name=name, **fields)
    for upstream in upstreams:
        Target.objects.create(service=service, host=upstream.host, port=upstream.port)
    return service


def make_route(service: Service, name: str = "route", **fields: Any) -> Route:
    fields.setdefault("paths", ["/api"])
    route = Route(service=service, name=name, **fields)
    route.full_clean()
    route.save()
    runtime.snapshots.invalidate()
    return route


@pytest.fixture
def api_route(db: Any, echo: EchoUpstream) -> Route:
    """``/api`` → the echo upstream, stripping the prefix."""
    return make_route(make_service(echo))


@pytest.fixture
def admin_client(client: Any, db: Any) -> Any:
    """The test client, logged in as a superuser."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def client() -> Any:
    """Django's test client sends no Host header, which HTTP/1.1 requires and the gateway enforces."""
    from django.test import Client

    return Client(HTTP_HOST="testserver")


#: A service for route-table tests that never proxy.
TABLE_SERVICE = ServiceConfig(1, "svc", "http", "", 1.0, 1.0, 1.0, 0, True, ())


def compiled_route(
    id: int, *paths: str, hosts=(), methods=(), headers=None, priority=0, service=TABLE_SERVICE
) -> CompiledRoute:
    """A route as the snapshot compiles it, without the database."""
    return CompiledRoute(
        id=id,
        name=f"r{id}",
        service=service,
        paths=paths,
        hosts=tuple(hosts),
        methods=frozenset(methods),
        headers=tuple((k, frozenset(v)) for k, v in (headers or {}).items()),
        priority=priority,
    )
