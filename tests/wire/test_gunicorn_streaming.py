"""200 MB each way through gunicorn without the worker holding the body (DESIGN §4: bodies stream).

The worker's resident memory is sampled from ``/proc`` while the body moves; buffering a 200 MB
body anywhere (Django, the gateway, gunicorn) would show as ~200 MB of growth.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from django_gateway.testing.upstreams import (
    EchoUpstream,
    RecordedRequest,
    Reply,
    echo_reply,
    pattern_bytes,
    stream_bytes,
)

from .conftest import GunicornServer, WireConfig

pytestmark = [pytest.mark.wire, pytest.mark.slow]

MiB = 1024 * 1024
SIZE = 200 * MiB
BLOCK = pattern_bytes(MiB)  # the pattern repeats every 256 bytes, so blocks concatenate into it
MAX_GROWTH = 50 * MiB


def pattern_sha256(size: int) -> str:
    assert size % MiB == 0
    digest = hashlib.sha256()
    for _ in range(size // MiB):
        digest.update(BLOCK)
    return digest.hexdigest()


@contextmanager
def peak_rss(pid: int, interval: float = 0.02) -> Iterator[list[int]]:
    """Samples ``pid``'s RSS until the block ends; yields a list whose first item becomes the peak."""
    peak = [GunicornServer.rss(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            peak[0] = max(peak[0], GunicornServer.rss(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], GunicornServer.rss(pid))


def big_download(request: RecordedRequest) -> Reply:
    if request.path == "/big":
        return stream_bytes(SIZE, 256 * 1024)
    return echo_reply(request)


def warm_up(gunicorn: GunicornServer) -> None:
    """A few ordinary requests first, so imports and pools do not count as growth."""
    for _ in range(3):
        assert gunicorn.get("/api/warm").status == 200


def test_200mb_upload_streams_through_gunicorn(wire: WireConfig, gunicorn: GunicornServer):
    with EchoUpstream() as upstream:
        wire.route(upstream, max_body_size=SIZE)
        warm_up(gunicorn)
        upstream.clear()
        worker = gunicorn.worker_pid
        baseline = GunicornServer.rss(worker)
        with peak_rss(worker) as peak, gunicorn.connect(timeout=30) as conn:
            head = (
                "POST /api/upload HTTP/1.1\r\nHost: wire.test\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Length: {SIZE}\r\nConnection: close\r\n\r\n"
            )
            conn.send(head.encode("ascii"))
            for _ in range(SIZE // MiB):
                conn.send(BLOCK)
            response = conn.read_response()
        (seen,) = upstream.requests
    assert response.status == 200
    expected = pattern_sha256(SIZE)
    assert (seen.body_size, seen.body_sha256) == (SIZE, expected)
    assert seen.header("content-length") == str(SIZE)
    assert response.json()["body_sha256"] == expected
    growth = peak[0] - baseline
    assert growth < MAX_GROWTH, f"worker RSS grew by {growth / MiB:.1f} MiB"


def test_200mb_download_streams_through_gunicorn(wire: WireConfig, gunicorn: GunicornServer):
    with EchoUpstream(responder=big_download) as upstream:
        wire.route(upstream)
        warm_up(gunicorn)
        worker = gunicorn.worker_pid
        baseline = GunicornServer.rss(worker)
        digest = hashlib.sha256()
        received = 0

        def sink(piece: bytes) -> None:
            nonlocal received
            digest.update(piece)
            received += len(piece)

        with peak_rss(worker) as peak, gunicorn.connect(timeout=30) as conn:
            conn.body_sink = sink
            conn.send(b"GET /api/big HTTP/1.1\r\nHost: wire.test\r\nConnection: close\r\n\r\n")
            response = conn.read_response()
    assert response.status == 200
    assert response.header("content-type") == "application/octet-stream"
    assert received == SIZE
    assert digest.hexdigest() == pattern_sha256(SIZE)
    growth = peak[0] - baseline
    assert growth < MAX_GROWTH, f"worker RSS grew by {growth / MiB:.1f} MiB"
