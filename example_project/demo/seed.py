"""The demo's services and routes, written idempotently: running the seed twice changes nothing.

Rows are found by name (services, routes) or by ``(service, host, port)`` (targets) and updated in
place, so edits made in the admin to *other* fields survive only until the next seed; the demo owns
the rows it seeds. Loopback targets of the seeded services that point at ports the demo no longer
uses (from an earlier run on other `--upstream-ports`) are removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from django_gateway import operations
from django_gateway.models import Consumer, RateLimit, Route, Service, Target

LOOPBACK = "127.0.0.1"


DEMO_CONSUMER = "demo-user"


@dataclass(frozen=True)
class Seeded:
    services: list[Service]
    targets: list[Target]
    routes: list[Route]
    consumer: Consumer


def seed(ports: Sequence[int]) -> Seeded:
    """Create or update the demo rows; ``ports`` are the two echo upstreams' ports."""
    port_a, port_b = ports
    with transaction.atomic():
        echo = _service("echo", path="")
        orders = _service("orders", path="/orders")
        targets = [
            *_targets(echo, [port_a, port_b]),
            *_targets(orders, [port_b]),
        ]
        routes = [
            # GET /echo/hello -> echo upstream, GET /hello (the prefix is stripped).
            _route("echo", echo, paths=["/echo"], strip_path=True),
            # GET /v1/orders/42 -> orders upstream, GET /orders/42 (prefix swapped for the
            # service's base path).
            _route("orders-v1", orders, paths=["/v1/orders"], strip_path=True),
            # Any path on Host echo.localhost -> echo upstream, path and Host unchanged.
            _route(
                "echo-by-host",
                echo,
                paths=[],
                hosts=["echo.localhost"],
                strip_path=False,
                preserve_host=True,
            ),
            # GET /secure/hello with X-API-Key -> echo upstream, which sees X-Consumer-* headers
            # and not the key; without a valid key, 401.
            _route("echo-key", echo, paths=["/secure"], strip_path=True, authentication="key"),
        ]
        consumer, _ = Consumer.objects.update_or_create(
            username=DEMO_CONSUMER, defaults={"groups": ["demo"], "enabled": True}
        )
        # Each consumer may call /secure 10 times a minute; the 11th gets 429.
        limit, _ = RateLimit.objects.update_or_create(
            route=routes[-1],
            consumer=None,
            period="minute",
            defaults={"limit": 10, "limit_by": "consumer", "enabled": True},
        )
        limit.full_clean()
    return Seeded(services=[echo, orders], targets=targets, routes=routes, consumer=consumer)


def fresh_demo_key(consumer: Consumer) -> str:
    """A new key for this run of the demo (keys are shown once); earlier demo keys are revoked."""
    operations.revoke_keys(consumer.api_keys.filter(name="demo", revoked_at__isnull=True))
    return operations.issue_key(consumer, name="demo")[1]


def _service(name: str, *, path: str) -> Service:
    service, _ = Service.objects.update_or_create(
        name=name,
        defaults={
            "protocol": "http",
            "path": path,
            "connect_timeout": 2.0,
            "read_timeout": 30.0,
            "timeout": 60.0,
            "retries": 1,
            "enabled": True,
        },
    )
    service.full_clean()  # inside the transaction: invalid seed data rolls back and says why
    return service


def _targets(service: Service, ports: Sequence[int]) -> list[Target]:
    targets = [
        Target.objects.update_or_create(
            service=service,
            host=LOOPBACK,
            port=port,
            defaults={"weight": 100, "enabled": True},
        )[0]
        for port in ports
    ]
    for target in targets:
        target.full_clean()
    stale = Target.objects.filter(service=service, host=LOOPBACK).exclude(port__in=list(ports))
    for target in stale:  # one by one, so each delete bumps the configuration version
        target.delete()
    return targets


def _route(name: str, service: Service, **fields: object) -> Route:
    defaults = {
        "service": service,
        "hosts": [],
        "methods": [],
        "headers": {},
        "priority": 0,
        "preserve_host": False,
        "connect_timeout": None,
        "read_timeout": None,
        "timeout": None,
        "max_body_size": None,
        "authentication": "none",
        "enabled": True,
        **fields,
    }
    route, _ = Route.objects.update_or_create(name=name, defaults=defaults)
    route.full_clean()
    return route
