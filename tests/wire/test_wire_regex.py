"""A route regex cannot make the gateway burn CPU: regexes run on RE2, in linear time.

With Python's backtracking ``re``, ``~^/(a+)+$`` made every request that reached it (routed or not)
exponentially slower in the number of ``a``s: 22 took 0.13 s, 32 would take minutes.
"""

from __future__ import annotations

import time

import pytest

from django_gateway.testing.upstreams import EchoUpstream

from .conftest import GatewayServer, WireConfig

pytestmark = pytest.mark.wire


def test_a_catastrophic_regex_answers_at_once(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    wire.route(echo, paths=["~^/(a+)+$"])
    started = time.monotonic()
    missed = gateway_server.get("/" + "a" * 40 + "!")  # no match: the worst case for a backtracker
    matched = gateway_server.get("/" + "a" * 40)
    assert time.monotonic() - started < 5  # a backtracking engine would take hours here
    assert not missed.is_problem and missed.status == 404  # Django's: no route took it
    assert matched.status == 200 and echo.request_count == 1
