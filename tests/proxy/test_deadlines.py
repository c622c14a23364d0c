"""Response deadlines (docs/proxying.md, Timeouts): what bounds a try, a buffered body, a stream.

- a body of at most 64 KiB is read before the response is handed on, so it must arrive within
  the try's ``timeout``, else 504 (nothing has been sent yet);
- a streamed body has only the per-read ``read_timeout``: a slow stream (SSE) flows on;
- a route's ``max_response_duration`` bounds the whole response, stream included: 504 before
  the head, a cut (never a clean end) after it.
"""

from __future__ import annotations

import json
import time

import pytest
from django.core.exceptions import ValidationError

from django_gateway.models import Route
from django_gateway.testing.upstreams import EchoUpstream, ResetUpstream, SlowUpstream, stream_bytes
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db

#: Slack on every time bound: loaded CI machines are slow, and the bounds only tell a deadline
#: that holds from one that does not (the old code took many seconds longer).
SLACK = 1.5
KiB = 1024


def trickle(size: int = 40, every: float = 0.2, **options) -> EchoUpstream:
    """An upstream that sends ``Content-Length: size`` and then one byte every ``every`` s."""
    return EchoUpstream(stream_bytes(size, 1, chunked=False, chunk_delay=every, **options))


def problem(response) -> dict:
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["status"] == response.status_code
    return body


def timed_get(client, path: str = "/api/x"):
    started = time.monotonic()
    response = client.get(path)
    return response, time.monotonic() - started


def drain(response) -> tuple[bytes, Exception | None, float]:
    """Read a streamed body to its end or its failure: (bytes, the error, seconds it took)."""
    started = time.monotonic()
    received = bytearray()
    try:
        for piece in response.streaming_content:
            received += piece
    except Exception as error:  # the stream's failure is what these tests look at
        return bytes(received), error, time.monotonic() - started
    finally:
        response.close()
    return bytes(received), None, time.monotonic() - started


# -- a buffered (small) body ---------------------------------------------------------------------


def test_trickled_small_body_is_504_within_the_try_deadline(client):
    # The case, shortened: each byte is well within read_timeout, the whole is not.
    with trickle() as upstream:
        make_route(make_service(upstream, retries=0), timeout=1, read_timeout=0.5)
        response, took = timed_get(client)
    assert response.status_code == 504
    assert "in time" in problem(response)["detail"]
    assert took < 1 + SLACK  # the old code waited for all 40 bytes: 8 s


def test_trickled_small_body_is_not_retried(client):
    # A timeout after the request was sent is never retried: the upstream may have acted on it.
    with trickle() as first, trickle() as second:
        make_route(make_service(first, second, retries=2), timeout=1, read_timeout=0.5)
        response, took = timed_get(client)
        assert response.status_code == 504
        assert first.request_count + second.request_count == 1
    assert took < 1 + SLACK


def test_a_retry_has_its_own_deadline_and_the_request_stays_within_two(client):
    # The first try fails early and is retried; the retry trickles and hits its own deadline.
    with ResetUpstream(delay=0.3) as reset, trickle() as slow:
        service = make_service(reset, slow, retries=1)
        service.targets.filter(port=reset.port).update(weight=300)  # tried first
        make_route(service, timeout=1, read_timeout=0.5)
        response, took = timed_get(client)
        assert response.status_code == 504
        problem(response)
        assert (reset.request_count, slow.request_count) == (1, 1)
    assert took < 2 * 1 + SLACK


# -- streamed bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("max_response_duration", [None, 30])
@pytest.mark.parametrize("chunked", [True, False])
def test_a_slow_stream_flows_past_timeout(client, chunked, max_response_duration):
    # SSE-like: 12 pieces 0.15 s apart take ~1.7 s, past timeout=0.5; each read is in time.
    body = stream_bytes(12 * 8 * KiB, 8 * KiB, chunked=chunked, chunk_delay=0.15)
    with EchoUpstream(body) as upstream:
        make_route(
            make_service(upstream, retries=0),
            timeout=0.5,
            read_timeout=1,
            max_response_duration=max_response_duration,
        )
        response = client.get("/api/x")
        assert response.status_code == 200
        received, error, _ = drain(response)
    assert error is None
    assert len(received) == 12 * 8 * KiB


@pytest.mark.parametrize("chunked", [True, False])
def test_max_response_duration_cuts_a_stream(client, chunked, caplog):
    # 200 pieces 0.05 s apart would take 10 s; the route allows 1 s for the whole response.
    body = stream_bytes(200 * KiB, KiB, chunked=chunked, chunk_delay=0.05)
    with EchoUpstream(body) as upstream:
        make_route(make_service(upstream), read_timeout=5, max_response_duration=1)
        with caplog.at_level("WARNING", logger="django_gateway.proxy"):
            response, took = timed_get(client)
            assert response.status_code == 200  # the head came in time and is passed on
            received, error, streamed = drain(response)
    assert error is not None and "max_response_duration" in str(error)
    assert 0 < len(received) < 200 * KiB
    assert took + streamed < 1 + SLACK
    (record,) = [r for r in caplog.records if r.name.startswith("django_gateway.proxy")]
    assert record.levelname == "WARNING" and record.request_id == response["X-Request-ID"]
    assert "max_response_duration" in record.getMessage()


def test_max_response_duration_cuts_a_silent_stream_without_waiting_for_read_timeout(client):
    # One 64 KiB piece, then silence far longer than the route's limit (read_timeout is 10 s).
    body = stream_bytes(4 * 64 * KiB, 64 * KiB, chunk_delay=8)
    with EchoUpstream(body) as upstream:
        make_route(make_service(upstream), read_timeout=10, max_response_duration=1)
        response, took = timed_get(client)
        assert response.status_code == 200
        received, error, streamed = drain(response)
    assert error is not None and "max_response_duration" in str(error)
    assert len(received) == 64 * KiB
    assert took + streamed < 1 + SLACK


def test_max_response_duration_before_the_head_is_a_504(client):
    with SlowUpstream(delay=5) as slow:
        make_route(make_service(slow, retries=0), timeout=30, max_response_duration=0.5)
        response, took = timed_get(client)
    assert response.status_code == 504
    assert "max_response_duration" in problem(response)["detail"]
    assert took < 0.5 + SLACK


def test_max_response_duration_bounds_a_small_body_too(client):
    with trickle() as upstream:  # 8 s of trickle; the try's timeout (30 s) would allow it
        make_route(make_service(upstream), timeout=30, read_timeout=5, max_response_duration=1)
        response, took = timed_get(client)
    assert response.status_code == 504
    assert "max_response_duration" in problem(response)["detail"]
    assert took < 1 + SLACK


@pytest.mark.parametrize("value", [0, -1])
def test_max_response_duration_must_be_positive(value, echo):
    route = Route(service=make_service(echo), name="r", paths=["/api"], max_response_duration=value)
    with pytest.raises(ValidationError) as caught:
        route.full_clean()
    assert "max_response_duration" in caught.value.message_dict
