"""A Consul double the gateway reaches through its own client (``GATEWAY['CONSUL_ADDRESS']``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_gateway.testing.consul import ConsulDouble


@pytest.fixture
def double(settings) -> Iterator[ConsulDouble]:
    """Short blocking waits and back-offs, so watch loops answer and stop within a second."""
    with ConsulDouble() as server:
        settings.GATEWAY = {
            **getattr(settings, "GATEWAY", {}),
            "CONSUL_ADDRESS": server.address,
            "CONSUL_WAIT": 0.5,
            "CONSUL_MIN_QUERY_INTERVAL": 0.05,
            "CONSUL_BACKOFF_MIN": 0.05,
            "CONSUL_BACKOFF_MAX": 0.2,
        }
        yield server
