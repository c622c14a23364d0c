"""A slow reader on either side holds the other back; nothing piles up in the gateway.

A fast upstream and a client that reads slowly (or a fast client and an upstream that reads
slowly) must not make the serving process buffer what the slow side has not taken yet: the
server's flow control has to reach through the gateway to the other socket. Two things show it:
the serving process's RSS stays flat, and the fast side is never far ahead of the slow one (only
socket buffers apart). Everything arrives intact.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from django_gateway.testing.rawservers import RequestReader
from django_gateway.testing.upstreams import (
    EchoUpstream,
    PatternBody,
    RecordedRequest,
    Reply,
    echo_reply,
)

from .bodies import (
    BLOCK,
    MAX_GROWTH,
    SIZE,
    Digest,
    MiB,
    pattern_sha256,
    peak_rss,
    upload_head,
    warm_up,
)
from .conftest import GatewayServer, WireConfig

pytestmark = [pytest.mark.wire, pytest.mark.slow]

#: The slow side takes this much slowly, then the rest at full speed.
SLOW_PART = 24 * MiB
SLOW_PIECE = 256 * 1024
SLOW_PAUSE = 0.02
#: How far the fast side may get ahead: the socket buffers of two connections (Linux autotunes a
#: receive buffer up to ``tcp_rmem``'s maximum, 32 MiB here; about 10-18 MiB is what shows) and
#: the server's write buffer. An unbounded buffer lets the fast side through at once: ~200 MB.
MAX_LEAD = 64 * MiB


class CountingBody:
    """A pattern body that counts what the upstream has handed to its socket so far."""

    def __init__(self, size: int) -> None:
        self.body = PatternBody(size, 256 * 1024)
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.body:
            yield piece
            self.sent += len(piece)


def test_a_slow_client_holds_a_fast_download_back(wire: WireConfig, gateway_server: GatewayServer):
    body = CountingBody(SIZE)

    def respond(request: RecordedRequest) -> Reply:
        if request.path == "/big":
            return Reply(headers=[("Content-Type", "application/octet-stream")], body=body)
        return echo_reply(request)

    with EchoUpstream(responder=respond) as upstream:
        wire.route(upstream)
        warm_up(gateway_server)
        worker = gateway_server.worker_pid
        baseline = GatewayServer.rss(worker)
        digest = Digest()
        lead = 0
        with peak_rss(worker) as peak, gateway_server.connect(timeout=30) as conn:
            conn.body_sink = digest
            conn.send(b"GET /api/big HTTP/1.1\r\nHost: wire.test\r\nConnection: close\r\n\r\n")
            while digest.received < SLOW_PART:
                conn.feed(conn.sock.recv(SLOW_PIECE // 4))
                time.sleep(SLOW_PAUSE / 4)
                lead = max(lead, body.sent - digest.received)
            response = conn.read_response()
    assert response.status == 200
    assert digest.received == SIZE
    assert digest.hexdigest() == pattern_sha256(SIZE)
    growth = peak[0] - baseline
    assert lead < MAX_LEAD, f"the upstream got {lead / MiB:.1f} MiB ahead of the client"
    assert growth < MAX_GROWTH, f"worker RSS grew by {growth / MiB:.1f} MiB"


def test_a_slow_client_upload_streams_through(wire: WireConfig, gateway_server: GatewayServer):
    with EchoUpstream() as upstream:
        wire.route(upstream, max_body_size=SIZE)
        warm_up(gateway_server)
        upstream.clear()
        worker = gateway_server.worker_pid
        baseline = GatewayServer.rss(worker)
        with peak_rss(worker) as peak, gateway_server.connect(timeout=30) as conn:
            conn.send(upload_head(SIZE))
            for offset in range(0, SLOW_PART, SLOW_PIECE):
                conn.send(BLOCK[offset % MiB : offset % MiB + SLOW_PIECE])
                time.sleep(SLOW_PAUSE)
            for _ in range((SIZE - SLOW_PART) // MiB):
                conn.send(BLOCK)
            response = conn.read_response()
        (seen,) = upstream.requests
    expected = pattern_sha256(SIZE)
    assert response.status == 200
    assert (seen.body_size, seen.body_sha256) == (SIZE, expected)
    growth = peak[0] - baseline
    assert growth < MAX_GROWTH, f"worker RSS grew by {growth / MiB:.1f} MiB"


class SlowReadingUpstream(EchoUpstream):
    """Reads the first ``slow_part`` bytes of each connection slowly, the rest at full speed."""

    def __init__(self, slow_part: int) -> None:
        super().__init__()
        self.slow_part = slow_part
        self.received = 0

    def _reader(self, sock: socket.socket, connection_id: int) -> RequestReader:
        def on_bytes(data: bytes) -> None:
            self._count_bytes(data)
            self.received += len(data)
            if self.received < self.slow_part:
                time.sleep(SLOW_PAUSE)

        return RequestReader(
            sock, connection_id, keep_body_limit=self.keep_body_limit, on_bytes=on_bytes
        )


def test_a_slow_upstream_holds_a_fast_upload_back(wire: WireConfig, gateway_server: GatewayServer):
    with SlowReadingUpstream(SLOW_PART) as upstream:
        wire.route(upstream, max_body_size=SIZE)
        warm_up(gateway_server)
        upstream.clear()
        upstream.received = SLOW_PART  # the warm-up is read at full speed
        worker = gateway_server.worker_pid
        baseline = GatewayServer.rss(worker)
        lead = sent = 0
        with peak_rss(worker) as peak, gateway_server.connect(timeout=30) as conn:
            conn.send(upload_head(SIZE))
            upstream.received = 0
            for _ in range(SIZE // MiB):
                conn.send(BLOCK)
                sent += MiB
                if upstream.received < SLOW_PART:
                    lead = max(lead, sent - upstream.received)
            response = conn.read_response()
        (seen,) = upstream.requests
    assert response.status == 200
    assert (seen.body_size, seen.body_sha256) == (SIZE, pattern_sha256(SIZE))
    growth = peak[0] - baseline
    assert lead < MAX_LEAD, f"the client got {lead / MiB:.1f} MiB ahead of the upstream"
    assert growth < MAX_GROWTH, f"worker RSS grew by {growth / MiB:.1f} MiB"
