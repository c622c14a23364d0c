"""Response deadlines through a real server, in both shells: what the client actually receives
when time runs out.

Before the head is sent a deadline is a 504 with a problem+json body; after it, the only honest
signal left is the framing, so a cut response must never end cleanly: a body shorter than its
``Content-Length``, or a chunked body without its last chunk, then the connection closes.
"""

from __future__ import annotations

import time

import pytest

from django_gateway.testing.upstreams import EchoUpstream, stream_bytes

from .client import RawResponse
from .conftest import GatewayServer, WireConfig

pytestmark = pytest.mark.wire

SLACK = 1.5  # generous: only tells a deadline that holds from one that does not
KiB = 1024


def timed_get(gateway_server: GatewayServer) -> tuple[RawResponse, float]:
    """GET /api/x, read until the server closes the connection (a cut response is incomplete)."""
    started = time.monotonic()
    with gateway_server.connect(timeout=30) as conn:
        conn.send(b"GET /api/x HTTP/1.1\r\nHost: wire.test\r\nConnection: close\r\n\r\n")
        response = conn.read_response(until_eof=True)
    return response, time.monotonic() - started


def test_trickled_small_body_is_504_problem_within_timeout(wire: WireConfig, gateway_server):
    # The upstream: Content-Length 100, then one byte every 0.3 s (30 s in all).
    trickle = stream_bytes(100, 1, chunked=False, chunk_delay=0.3)
    with EchoUpstream(trickle) as upstream:
        wire.route(upstream, service={"read_timeout": 1, "timeout": 2, "retries": 0})
        response, took = timed_get(gateway_server)
    assert response.status == 504 and response.complete
    assert response.is_problem and response.json()["status"] == 504
    assert took < 2 + SLACK


@pytest.mark.parametrize("chunked", [True, False])
def test_a_slow_stream_flows_past_timeout(wire: WireConfig, gateway_server, chunked):
    # Server-sent-events style: 10 pieces 0.2 s apart, past timeout=0.5, each within read_timeout.
    body = stream_bytes(10 * 8 * KiB, 8 * KiB, chunked=chunked, chunk_delay=0.2)
    with EchoUpstream(body) as upstream:
        wire.route(upstream, service={"read_timeout": 1, "timeout": 0.5, "retries": 0})
        response, _ = timed_get(gateway_server)
    assert response.status == 200 and response.complete
    assert len(response.body) == 10 * 8 * KiB


@pytest.mark.parametrize("chunked", [True, False])
def test_max_response_duration_cuts_the_stream_visibly(wire: WireConfig, gateway_server, chunked):
    # 200 pieces 0.05 s apart would take 10 s; the route allows 1 s from the start of the try.
    body = stream_bytes(200 * KiB, KiB, chunked=chunked, chunk_delay=0.05)
    with EchoUpstream(body) as upstream:
        wire.route(upstream, service={"read_timeout": 5}, max_response_duration=1)
        response, took = timed_get(gateway_server)
    assert response.status == 200  # the head was on time; what follows cannot change it
    assert not response.complete  # no terminating chunk / fewer bytes than Content-Length
    assert 0 < len(response.body) < 200 * KiB
    if not chunked:
        assert response.header("content-length") == str(200 * KiB)
    assert took < 1 + SLACK
