"""Server-sent events reach the client as they are sent, in both shells.

An upstream sends one ``text/event-stream`` event every 100 ms. A gateway that buffered the
response (to the end, or to some size) would deliver them late and in a burst; each must instead
arrive within a fraction of the interval after the upstream sent it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from django_gateway.testing.upstreams import EchoUpstream, Reply

from .conftest import GatewayServer, WireConfig

pytestmark = pytest.mark.wire

EVENTS = 10
INTERVAL = 0.1
#: Generous against a loaded machine; a buffered stream is late by up to EVENTS * INTERVAL.
MAX_DELAY = 0.08


class EventStream:
    """``EVENTS`` events, one per ``INTERVAL``; remembers when each was handed to the socket
    (the upstream sends each piece as soon as it is yielded)."""

    def __init__(self) -> None:
        self.sent_at: dict[int, float] = {}

    def __iter__(self) -> Iterator[bytes]:
        for n in range(EVENTS):
            if n:
                time.sleep(INTERVAL)
            self.sent_at[n] = time.monotonic()
            yield f'id: {n}\nevent: tick\ndata: {{"n": {n}}}\n\n'.encode()


def test_events_arrive_as_they_are_sent(wire: WireConfig, gateway_server: GatewayServer):
    stream = EventStream()
    reply = Reply(
        headers=[("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")],
        body=stream,
    )
    with EchoUpstream(responder=reply) as upstream:
        wire.route(upstream)
        arrived_at: dict[int, float] = {}
        pending = bytearray()

        def sink(piece: bytes) -> None:
            now = time.monotonic()
            pending.extend(piece)
            while b"\n\n" in pending:
                event, _, rest = bytes(pending).partition(b"\n\n")
                pending[:] = rest
                fields = dict(line.split(": ", 1) for line in event.decode().splitlines())
                arrived_at[int(fields["id"])] = now

        with gateway_server.connect(timeout=10) as conn:
            conn.body_sink = sink
            conn.send(
                b"GET /api/events HTTP/1.1\r\nHost: wire.test\r\n"
                b"Accept: text/event-stream\r\nConnection: close\r\n\r\n"
            )
            response = conn.read_response()
    assert response.status == 200
    assert response.header("content-type") == "text/event-stream"
    assert response.header("content-length") is None  # streamed, so chunked
    assert sorted(arrived_at) == list(range(EVENTS))
    delays = {n: round(arrived_at[n] - stream.sent_at[n], 3) for n in range(EVENTS)}
    assert max(delays.values()) < MAX_DELAY, delays
