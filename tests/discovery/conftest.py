"""Fixtures for discovery tests: a Consul double, fast settings, and watcher-thread hygiene."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings

from django_gateway.config import ServiceConfig
from django_gateway.discovery import instances_for
from django_gateway.exceptions import ServiceUnavailable
from django_gateway.runtime import runtime
from django_gateway.testing.consul import ConsulDouble
from django_gateway.testing.state import reset_gateway_state

#: Short waits and back-offs so every behaviour shows within a second.
FAST = {
    "CONSUL_WAIT": 1.0,
    "CONSUL_TIMEOUT": 1.0,
    "CONSUL_BACKOFF_MIN": 0.05,
    "CONSUL_BACKOFF_MAX": 0.2,
    "CONSUL_MIN_QUERY_INTERVAL": 0.01,
    "CONSUL_COLD_START_TIMEOUT": 1.0,
}
WATCHER_THREAD = "django-gateway-consul"


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(WATCHER_THREAD)]


@pytest.fixture(autouse=True)
def watchers_stop() -> Iterator[None]:
    """Runs after the test's double is stopped: every watcher thread must then end promptly."""
    yield
    reset_gateway_state()
    deadline = time.monotonic() + 2
    while watcher_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not watcher_threads(), "Consul watcher threads outlived the test"


@pytest.fixture
def double() -> Iterator[ConsulDouble]:
    with ConsulDouble() as server:
        yield server


@pytest.fixture
def configure(settings: Any, double: ConsulDouble) -> Callable[..., None]:
    """``configure(**overrides)``: GATEWAY pointing at the double, with :data:`FAST` timings."""

    def apply(**overrides: Any) -> None:
        settings.GATEWAY = {
            **django_settings.GATEWAY,
            "CONSUL_ADDRESS": double.address,
            **FAST,
            **overrides,
        }

    apply()
    return apply


def consul_service(
    name: str = "users",
    *,
    tags: tuple[str, ...] = (),
    include_warning: bool = False,
    datacenter: str = "",
) -> ServiceConfig:
    """A ``discovery="consul"`` service as the snapshot compiles it, without the database."""
    return ServiceConfig(
        1, name, "http", "", 1.0, 1.0, 1.0, 0, True, (),
        discovery="consul",
        consul_service=name,
        consul_tags=tags,
        consul_datacenter=datacenter,
        consul_include_warning=include_warning,
    )  # fmt: skip


def timed(service: ServiceConfig, limit: float = 0.05) -> Any:
    """``instances_for`` as ``{(host, port): weight}``, or the ServiceUnavailable it raised;
    asserts the call took less than ``limit`` seconds (requests never wait on Consul)."""
    started = time.perf_counter()
    try:
        result: Any = {(i.host, i.port): i.weight for i in instances_for(service, runtime.watchers)}
    except ServiceUnavailable as exc:
        result = exc
    elapsed = time.perf_counter() - started
    assert elapsed < limit, f"instances_for blocked for {elapsed:.3f}s"
    return result


def eventually(
    service: ServiceConfig, predicate: Callable[[Any], bool], within: float = 1.0
) -> Any:
    """Poll :func:`timed` until ``predicate(result)``; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = timed(service)
        if predicate(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"still {result!r} after {within}s")
        time.sleep(0.01)


def unavailable(result: Any) -> bool:
    return isinstance(result, ServiceUnavailable)
