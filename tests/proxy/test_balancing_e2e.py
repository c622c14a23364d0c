"""Load balancing through the gateway, against real upstream servers on loopback."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from django.test import Client

from django_gateway.config import Instance
from django_gateway.runtime import runtime
from django_gateway.testing.upstreams import EchoUpstream, SlowUpstream, stream_bytes, unused_port

from ..conftest import make_route, make_service

pytestmark = pytest.mark.django_db

ALGORITHMS = ["round_robin", "least_connections", "random", "consistent_hash"]


def served(*upstreams: EchoUpstream) -> tuple[int, ...]:
    return tuple(upstream.request_count for upstream in upstreams)


def test_consistent_hash_on_a_header_keeps_each_value_on_one_upstream(client):
    with EchoUpstream() as a, EchoUpstream() as b, EchoUpstream() as c:
        make_route(
            make_service(
                a, b, c, load_balancing="consistent_hash", hash_on="header", hash_on_header="X-User"
            )
        )
        homes = {}
        for user in range(30):
            before = served(a, b, c)
            for _ in range(4):
                assert client.get("/api/x", HTTP_X_USER=f"user-{user}").status_code == 200
            grew = [
                i for i, (x, y) in enumerate(zip(before, served(a, b, c), strict=True)) if y > x
            ]
            assert len(grew) == 1  # all four requests of one user went to the same upstream
            homes[user] = grew[0]
        assert set(homes.values()) == {0, 1, 2}  # thirty users spread over all three


def test_consistent_hash_on_a_cookie_keeps_each_value_on_one_upstream(client):
    with EchoUpstream() as a, EchoUpstream() as b:
        make_route(
            make_service(
                a, b, load_balancing="consistent_hash", hash_on="cookie", hash_on_cookie="sid"
            )
        )
        homes = set()
        for session in range(20):
            client.cookies["sid"] = f"session-{session}"
            before = served(a, b)
            for _ in range(3):
                assert client.get("/api/x").status_code == 200
            after = served(a, b)
            assert sorted(y - x for x, y in zip(before, after, strict=True)) == [0, 3]
            homes.add(after[0] > before[0])
        assert homes == {True, False}


def test_consistent_hash_without_the_header_falls_back_to_the_client_address(client):
    with EchoUpstream() as a, EchoUpstream() as b:
        make_route(
            make_service(
                a, b, load_balancing="consistent_hash", hash_on="header", hash_on_header="X-User"
            )
        )
        for _ in range(6):
            assert client.get("/api/x").status_code == 200
        assert sorted(served(a, b)) == [0, 6]


def test_least_connections_avoids_the_upstream_busy_with_a_slow_request(client):
    with SlowUpstream(delay=1.0) as slow, EchoUpstream() as fast:
        service = make_service(slow, fast, load_balancing="least_connections")
        # Both idle: ties go by weighted round robin, so the heavier slow upstream comes first.
        service.targets.filter(port=slow.port).update(weight=1000)
        make_route(service)
        client.get("/nothing-routed")  # load the configuration snapshot on this thread
        slow_result = []
        thread = threading.Thread(
            target=lambda: slow_result.append(Client(HTTP_HOST="testserver").get("/api/slow"))
        )
        thread.start()
        deadline = time.monotonic() + 5
        while slow.request_count == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert slow.request_count == 1
        statuses = [client.get("/api/fast").status_code for _ in range(5)]
        assert thread.is_alive()  # the slow request is still in flight
        thread.join(timeout=5)
        assert statuses == [200] * 5
        assert slow_result[0].status_code == 200
        assert (slow.request_count, fast.request_count) == (1, 5)
        assert runtime.balancers.in_flight("svc").total() == 0


def test_in_flight_lasts_until_a_streamed_body_is_fully_sent(client):
    with EchoUpstream(stream_bytes(1_000_000)) as streaming, EchoUpstream() as other:
        service = make_service(streaming, other, load_balancing="least_connections")
        service.targets.filter(port=streaming.port).update(weight=1000)
        make_route(service)
        in_flight = runtime.balancers.in_flight("svc")
        response = client.get("/api/download")
        assert response.streaming
        target = Instance(streaming.host, streaming.port, 1000)
        assert in_flight.get(target) == 1  # the head is here, the body is still streaming
        assert client.get("/api/x").status_code == 200
        assert other.request_count == 1  # so the next request went to the idle upstream
        assert len(b"".join(response.streaming_content)) == 1_000_000
        assert in_flight.total() == 0  # the test client closes the response after the body


def test_in_flight_ends_with_a_failed_try_and_with_a_buffered_response(client, echo):
    dead = SimpleNamespace(host="127.0.0.1", port=unused_port())
    make_route(make_service(dead, echo, load_balancing="least_connections"))
    for _ in range(4):
        assert client.get("/api/x").status_code == 200
    assert runtime.balancers.in_flight("svc").total() == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_refused_instance_is_skipped_and_ejected_with_every_algorithm(client, echo, algorithm):
    dead = SimpleNamespace(host="127.0.0.1", port=unused_port())
    make_route(make_service(dead, echo, load_balancing=algorithm))
    statuses = [client.get("/api/x", REMOTE_ADDR=f"10.0.0.{i}").status_code for i in range(30)]
    assert statuses == [200] * 30  # each refused try was retried on the other instance
    assert echo.request_count == 30
    assert runtime.ejections.is_ejected(("svc", dead.host, dead.port))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_reaches_every_upstream(client, algorithm):
    with EchoUpstream() as a, EchoUpstream() as b:
        make_route(make_service(a, b, load_balancing=algorithm))
        for i in range(40):
            assert client.get("/api/x", REMOTE_ADDR=f"10.0.{i}.1").status_code == 200
        assert min(served(a, b)) >= 5 and sum(served(a, b)) == 40


def test_changing_the_algorithm_takes_effect_with_the_next_snapshot(client):
    with EchoUpstream() as a, EchoUpstream() as b:
        service = make_service(a, b)
        make_route(service)
        for _ in range(4):
            client.get("/api/x")
        assert served(a, b) == (2, 2)
        service.load_balancing = "consistent_hash"
        service.save()
        runtime.snapshots.invalidate()
        for _ in range(6):
            client.get("/api/x")
        assert sorted(served(a, b)) == [2, 8]  # one client address: one upstream
