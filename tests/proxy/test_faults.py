"""Broken upstreams: every fault has a defined status, a problem+json body, and a retry policy."""

from __future__ import annotations

import json
import time

import pytest

from django_gateway.runtime import runtime
from django_gateway.testing.upstreams import (
    BlackholeUpstream,
    EchoUpstream,
    GarbageUpstream,
    Reply,
    ResetUpstream,
    SlowUpstream,
    TruncatedUpstream,
    stream_bytes,
    unused_port,
)
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db


class ClosedPort:
    """A target nobody listens on: connection refused."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = unused_port()


def problem(response) -> dict:
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["status"] == response.status_code
    assert body["request_id"] == response["X-Request-ID"]
    return body


def test_connection_refused_is_502(client):
    make_route(make_service(ClosedPort(), retries=0), paths=["/api"])
    response = client.get("/api/x", HTTP_X_REQUEST_ID="trace-1")
    assert response.status_code == 502
    assert problem(response)["request_id"] == "trace-1"


@pytest.mark.parametrize("method", ["get", "post"])
def test_reset_after_the_request(client, method):
    with ResetUpstream() as reset:
        make_route(make_service(reset, retries=0), paths=["/api"])
        response = getattr(client, method)("/api/x")
        assert response.status_code == 502
        problem(response)
        assert reset.request_count == 1


def test_garbage_is_502(client):
    with GarbageUpstream() as garbage:
        make_route(make_service(garbage), paths=["/api"])
        response = client.get("/api/x")
        assert response.status_code == 502
        assert garbage.request_count == 1  # a malformed answer is never retried


def test_an_unasked_protocol_switch_is_502_not_a_500(client):
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"
    with GarbageUpstream(switch) as upstream:
        make_route(make_service(upstream), paths=["/api"])
        response = client.get("/api/x")
    assert response.status_code == 502
    assert "switched protocols" in problem(response)["detail"]


def test_silent_upstream_is_504_after_the_read_timeout(client):
    with BlackholeUpstream() as hole:
        make_route(make_service(hole, retries=2), paths=["/api"], read_timeout=0.2)
        response = client.get("/api/x")
        assert response.status_code == 504
        problem(response)
        assert hole.request_count == 1  # a timeout is never retried


def test_total_deadline_per_try(client):
    with SlowUpstream(delay=2) as slow:
        make_route(make_service(slow), paths=["/api"], timeout=0.3, read_timeout=10)
        response = client.get("/api/x")
        assert response.status_code == 504


def test_slow_body_times_out_mid_stream(client):
    with EchoUpstream(Reply(body=stream_bytes(1 << 20).body, chunk_delay=1)) as upstream:
        make_route(make_service(upstream), paths=["/api"], read_timeout=0.2)
        response = client.get("/api/x")
        assert response.status_code == 200
        with pytest.raises(Exception, match="stopped sending"):
            b"".join(response.streaming_content)


def test_truncated_body_is_never_passed_off_as_complete(client):
    with TruncatedUpstream(declared_length=100_000, sent_length=10) as upstream:
        make_route(make_service(upstream), paths=["/api"])
        response = client.get("/api/x")
        with pytest.raises(Exception, match="middle of the body"):
            b"".join(response.streaming_content)


def test_no_targets_is_503_with_retry_after(client):
    make_route(make_service(), paths=["/api"])
    response = client.get("/api/x")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    problem(response)


def test_refused_target_is_retried_on_another_even_for_post(client, echo):
    make_route(make_service(ClosedPort(), echo, retries=1), paths=["/api"])
    for _ in range(2):
        assert client.post("/api/x", data=b"payload", content_type="text/plain").status_code == 200
    assert [r.body for r in echo.requests] == [b"payload", b"payload"]


def test_reset_is_retried_for_get_but_not_for_post(client, echo):
    with ResetUpstream() as reset:
        make_route(make_service(reset, echo, retries=1), paths=["/api"])
        statuses = [client.get("/api/x").status_code for _ in range(2)]
        assert statuses == [200, 200]
        runtime.ejections.reset()
        posts = [
            client.post("/api/x", data=b"a", content_type="text/plain").status_code
            for _ in range(2)
        ]
        assert sorted(posts) == [200, 502]
        assert reset.request_count == 2  # one GET, one POST; the POST was not replayed


def test_post_with_idempotency_key_is_retried(client, echo):
    with ResetUpstream() as reset:
        make_route(make_service(reset, echo, retries=1), paths=["/api"])
        statuses = {
            client.post(
                "/api/x", data=b"a", content_type="text/plain", HTTP_IDEMPOTENCY_KEY=f"k{i}"
            ).status_code
            for i in range(2)
        }
        assert statuses == {200}
        assert echo.request_count == 2


def test_retries_are_bounded(client):
    dead = [ClosedPort() for _ in range(4)]
    make_route(make_service(*dead, retries=2), paths=["/api"])
    response = client.get("/api/x")
    assert response.status_code == 502
    assert json.loads(response.content)["status"] == 502


def test_failing_instance_is_ejected_then_probed(client, echo, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(runtime.ejections, "clock", lambda: now[0])
    with ResetUpstream(after_request=False) as reset:
        make_route(make_service(reset, echo, retries=0), paths=["/api"])
        statuses = [client.get("/api/x").status_code for _ in range(10)]
        # round robin alternates until the reset instance has failed 3 times, then only echo serves
        assert statuses.count(502) == 3
        assert reset.connections_accepted == 3
        now[0] += 11  # past the cool-down: one probe goes to the ejected instance
        statuses = [client.get("/api/x").status_code for _ in range(4)]
        assert statuses.count(502) == 1
        assert reset.connections_accepted == 4


def test_all_instances_ejected_is_503_with_retry_after(client, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(runtime.ejections, "clock", lambda: now[0])
    with ResetUpstream(after_request=False) as reset:
        make_route(make_service(reset, retries=0), paths=["/api"])
        assert [client.get("/api/x").status_code for _ in range(3)] == [502, 502, 502]
        now[0] += 4
        response = client.get("/api/x")
        assert response.status_code == 503
        assert response["Retry-After"] == "6"
        assert reset.connections_accepted == 3


def test_weighted_round_robin(client):
    with EchoUpstream() as heavy, EchoUpstream() as light:
        service = make_service(heavy, light)
        service.targets.filter(port=heavy.port).update(weight=300)
        make_route(service, paths=["/api"])
        for _ in range(8):
            client.get("/api/x")
        assert (heavy.request_count, light.request_count) == (6, 2)


def test_zero_weight_and_disabled_targets_get_nothing(client, echo):
    with EchoUpstream() as idle, EchoUpstream() as off:
        service = make_service(echo, idle, off)
        service.targets.filter(port=idle.port).update(weight=0)
        service.targets.filter(port=off.port).update(enabled=False)
        make_route(service, paths=["/api"])
        for _ in range(4):
            client.get("/api/x")
        assert (echo.request_count, idle.request_count, off.request_count) == (4, 0, 0)


def test_stale_pooled_connection_is_replaced_transparently(client):
    # The upstream claims keep-alive but closes after each response: the pooled socket is dead.
    reply = Reply(body=b"ok", headers=[("Connection", "keep-alive")], close=True)
    with EchoUpstream(reply) as upstream:
        make_route(make_service(upstream, retries=0), paths=["/api"])
        assert client.get("/api/x").status_code == 200
        time.sleep(0.1)  # let the server's close arrive; the race itself is covered by GET retries
        assert client.post("/api/x", data=b"once", content_type="text/plain").status_code == 200
        assert [r.method for r in upstream.requests] == ["GET", "POST"]
        assert upstream.connections_accepted == 2


def test_retries_stop_once_the_deadline_has_passed(client):
    with (
        ResetUpstream(delay=0.3) as first,
        ResetUpstream(delay=0.3) as second,
        ResetUpstream(delay=0.3) as third,
    ):
        make_route(make_service(first, second, third, retries=2), paths=["/api"], timeout=0.5)
        response = client.get("/api/x")
        assert response.status_code == 502
        # two tries of ~0.3 s each: the third would start after the 0.5 s deadline
        assert first.request_count + second.request_count + third.request_count == 2
