"""200 MB each way through a real server without it holding the body (DESIGN §4: bodies stream).

The serving process's resident memory is sampled from ``/proc`` while the body moves; buffering a
200 MB body anywhere (the server, Django, the gateway) would show as ~200 MB of growth. Here both
ends are fast; ``test_wire_backpressure.py`` makes one of them slow.
"""

from __future__ import annotations

import pytest

from django_gateway.testing.upstreams import EchoUpstream

from .bodies import (
    BLOCK,
    MAX_GROWTH,
    SIZE,
    Digest,
    MiB,
    download_responder,
    pattern_sha256,
    peak_rss,
    upload_head,
    warm_up,
)
from .conftest import GatewayServer, WireConfig

pytestmark = [pytest.mark.wire, pytest.mark.slow]


def test_200mb_upload_streams_through(wire: WireConfig, gateway_server: GatewayServer):
    with EchoUpstream() as upstream:
        wire.route(upstream, max_body_size=SIZE)
        warm_up(gateway_server)
        upstream.clear()
        worker = gateway_server.worker_pid
        baseline = GatewayServer.rss(worker)
        with peak_rss(worker) as peak, gateway_server.connect(timeout=30) as conn:
            conn.send(upload_head(SIZE))
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


def test_200mb_download_streams_through(wire: WireConfig, gateway_server: GatewayServer):
    with EchoUpstream(responder=download_responder(SIZE)) as upstream:
        wire.route(upstream)
        warm_up(gateway_server)
        worker = gateway_server.worker_pid
        baseline = GatewayServer.rss(worker)
        digest = Digest()
        with peak_rss(worker) as peak, gateway_server.connect(timeout=30) as conn:
            conn.body_sink = digest
            conn.send(b"GET /api/big HTTP/1.1\r\nHost: wire.test\r\nConnection: close\r\n\r\n")
            response = conn.read_response()
    assert response.status == 200
    assert response.header("content-type") == "application/octet-stream"
    assert digest.received == SIZE
    assert digest.hexdigest() == pattern_sha256(SIZE)
    growth = peak[0] - baseline
    assert growth < MAX_GROWTH, f"worker RSS grew by {growth / MiB:.1f} MiB"
