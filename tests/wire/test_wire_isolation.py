"""One slow service cannot take the others down with it.

``Service.max_concurrent_requests`` caps the requests a service has in flight in one gateway
process: past it, the next request gets 503 with ``Retry-After`` and problem+json at once,
without the service being contacted; a request counts until its response is finished, body
included. That holds in both shells.

Under the ASGI shell a request waiting on a slow upstream holds only sockets: a single uvicorn
process with 200 requests parked on a 2-s upstream still answers a fast route at once (under
WSGI each parked request holds a worker thread, so that test is ASGI-only).
"""

from __future__ import annotations

import socket
import time

import pytest

from django_gateway.testing.upstreams import EchoUpstream, SlowUpstream, stream_bytes

from .client import request
from .conftest import GatewayServer, WireConfig, only_asgi

pytestmark = pytest.mark.wire

SLOW = 1.5


@pytest.fixture(params=["slow-head", "slow-body"])
def slow_upstream(request: pytest.FixtureRequest):
    """An upstream whose answer takes SLOW seconds: before its head, or while its body flows."""
    if request.param == "slow-head":
        with SlowUpstream(SLOW) as upstream:
            yield upstream
    else:
        body = stream_bytes(10 * 1024, 1024, chunk_delay=SLOW / 10)
        with EchoUpstream(responder=body) as upstream:
            yield upstream


def test_a_full_service_answers_503_until_a_request_finishes(
    wire: WireConfig, gateway_server: GatewayServer, slow_upstream: EchoUpstream, echo: EchoUpstream
):
    wire.route(slow_upstream, paths=["/capped"], service={"max_concurrent_requests": 1}, sync=False)
    wire.route(echo, paths=["/other"])
    with gateway_server.connect(timeout=10) as first:
        first.send(request("GET /capped/a HTTP/1.1", "Host: wire.test", "Connection: close"))
        slow_upstream.wait_for_requests(1)

        refused = gateway_server.get("/capped/b")
        assert refused.status == 503, (refused.status, refused.body)
        assert refused.is_problem and refused.json()["status"] == 503
        assert "max_concurrent_requests" in refused.json()["detail"]
        assert (refused.header("retry-after") or "").isdigit()
        assert slow_upstream.request_count == 1  # the full service was not contacted

        assert gateway_server.get("/other/x").status == 200  # other services are unaffected

        served = first.read_response()
    assert served.status == 200 and served.complete
    assert gateway_server.get("/capped/c").status == 200  # the slot is free again
    assert [r.target for r in slow_upstream.requests] == ["/a", "/c"]


PARKED = 200
FAST_REQUESTS = 50
#: Generous: a behaviour check (nothing waits behind the parked requests), not a benchmark.
FAST_ENOUGH = 0.1


@only_asgi
def test_parked_requests_do_not_slow_a_fast_route(
    wire: WireConfig, gateway_server: GatewayServer, echo: EchoUpstream
):
    with SlowUpstream(2.0) as slow:
        wire.route(slow, paths=["/slow"], service={"retries": 0}, sync=False)
        wire.route(echo, paths=["/fast"])
        parked: list[socket.socket] = []
        try:
            for n in range(PARKED):
                sock = socket.create_connection(("127.0.0.1", gateway_server.port), timeout=10)
                sock.sendall(request(f"GET /slow/{n} HTTP/1.1", "Host: wire.test"))
                parked.append(sock)
            slow.wait_for_requests(PARKED, timeout=5)
            timings = []
            with gateway_server.connect() as conn:  # one keep-alive connection, in sequence
                for n in range(FAST_REQUESTS):
                    started = time.monotonic()
                    conn.send(request(f"GET /fast/{n} HTTP/1.1", "Host: wire.test"))
                    response = conn.read_response()
                    timings.append(time.monotonic() - started)
                    assert response.status == 200 and response.json()["target"] == f"/{n}"
            still_parked = sum(_nothing_yet(sock) for sock in parked)
        finally:
            for sock in parked:
                sock.close()
    assert max(timings) < FAST_ENOUGH, [round(t, 3) for t in timings]
    assert still_parked == PARKED  # the fast route was measured while all of them waited


def _nothing_yet(sock: socket.socket) -> bool:
    """Whether the server has neither answered on ``sock`` nor closed it."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    return False
