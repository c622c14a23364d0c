"""``Service.max_concurrent_requests``: a per-process cap on requests in flight (WSGI shell here;
the wire tests run the same cap under both shells)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import Client

from django_gateway.concurrency import ServiceGates
from django_gateway.runtime import runtime
from django_gateway.testing.upstreams import EchoUpstream, SlowUpstream, stream_bytes
from tests.conftest import make_route, make_service
from tests.proxy.test_faults import ClosedPort

pytestmark = pytest.mark.django_db


def test_gates_count_per_service_and_refuse_at_the_cap():
    gates = ServiceGates()
    assert gates.enter("a", 2) and gates.enter("a", 2)
    assert not gates.enter("a", 2)  # nothing counted for the refused one
    assert gates.enter("b", 1)
    assert gates.in_flight("a") == 2
    gates.leave("a")
    assert gates.in_flight("a") == 1
    assert gates.enter("a", 2)
    gates.leave("a")
    gates.leave("a")
    gates.leave("b")
    assert gates.in_flight("a") == gates.in_flight("b") == 0


def test_a_full_service_answers_503_with_retry_after_until_a_request_finishes():
    with SlowUpstream(delay=1.0) as slow:
        make_route(make_service(slow, max_concurrent_requests=2), paths=["/api"])
        runtime.snapshots.get()  # built here: the threads below only read it
        started = threading.Barrier(3)

        def call() -> int:
            started.wait()
            return Client(HTTP_HOST="testserver").get("/api/x").status_code

        with ThreadPoolExecutor(2) as pool:
            pending = [pool.submit(call) for _ in range(2)]
            started.wait()
            deadline = time.monotonic() + 2
            while len(slow.requests) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            refused = Client(HTTP_HOST="testserver").get("/api/x")
            statuses = [f.result() for f in pending]
    assert statuses == [200, 200]
    assert refused.status_code == 503
    assert refused["Content-Type"] == "application/problem+json"
    assert refused["Retry-After"] == "5"
    assert "max_concurrent_requests" in refused.json()["detail"]
    assert len(slow.requests) == 2  # the refused request never reached the service
    assert runtime.gates.in_flight("svc") == 0


def test_a_streamed_response_counts_until_it_is_closed(client):
    with EchoUpstream(lambda request: stream_bytes(256 * 1024)) as upstream:
        make_route(make_service(upstream, max_concurrent_requests=1), paths=["/api"])
        streaming = client.get("/api/big")
        assert streaming.streaming
        assert client.get("/api/other").status_code == 503  # the stream is still in flight
        assert len(b"".join(streaming.streaming_content)) == 256 * 1024
        streaming.close()
        assert client.get("/api/other").status_code == 200


def test_failures_release_the_count(client):
    service = make_service(ClosedPort(), max_concurrent_requests=1, retries=0)
    make_route(service, paths=["/api"])
    assert client.get("/api/x").status_code == 502
    assert client.get("/api/x").status_code == 502  # not 503: the failed request left
    assert runtime.gates.in_flight(service.name) == 0


def test_services_without_a_cap_are_not_counted(client, echo):
    make_route(make_service(echo), paths=["/api"])
    assert client.get("/api/x").status_code == 200
    assert runtime.gates._in_flight == {}
