"""Fixtures and helpers for the Consul double's tests (``test_consul_double*.py``)."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from typing import Any

import consul
import pytest

from django_gateway.testing.consul import ConsulDouble


@pytest.fixture
def double() -> Iterator[ConsulDouble]:
    with ConsulDouble() as server:
        yield server


@pytest.fixture
def client(double: ConsulDouble) -> consul.Consul:
    return consul.Consul(host=double.host, port=double.port, connections_timeout=5)


def users(double: ConsulDouble) -> None:
    """CONSUL_FACTS §5 D: users-1 on node-a with no address, users-2 on node-b, critical."""
    tags = ["gateway.enable=true", "gateway.route=/api/users", "v2"]
    meta = {"version": "2.3.1", "protocol": "http"}
    weights = {"Passing": 10, "Warning": 1}
    double.catalog.register("users", "users-1", port=8080, tags=tags, meta=meta, weights=weights,
                            node="node-a", node_address="10.0.0.11")  # fmt: skip
    double.catalog.register("users", "users-2", address="10.0.1.7", port=8080, tags=tags,
                            meta=meta, weights=weights, node="node-b", node_address="10.0.0.12",
                            status="critical")  # fmt: skip


def upstream(entry: dict[str, Any]) -> str:
    """The resolution rule of CONSUL_FACTS §1.9: Service.Address or Node.Address, Service.Port."""
    return f"{entry['Service']['Address'] or entry['Node']['Address']}:{entry['Service']['Port']}"


def raw_get(double: ConsulDouble, target: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """A GET whose header names come back exactly as sent on the wire."""
    conn = http.client.HTTPConnection(double.host, double.port, timeout=5)
    try:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def in_thread(delay: float, action: Any) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
