"""A client that goes away: the upstream hears of it, and the next request is unharmed.

The upstream here notes the moment its connection from the gateway closes (or its send fails).
In both shells a client that leaves mid-download or mid-upload stops the upstream exchange soon
after, and the requests that follow get their own answers (no late response from an abandoned
exchange lands on a pooled connection). The ASGI shell also notices a client that leaves while
nothing moves (a slow head, a quiet stream: it watches for ``http.disconnect``); a WSGI worker
finds out only when it next writes, which is why those two tests are ASGI-only (docs/asgi.md,
"A client that goes away").
"""

from __future__ import annotations

import json
import select
import socket
import time

import pytest

from django_gateway.testing.rawservers import LoopbackServer, RecordedRequest
from django_gateway.testing.upstreams import pattern_bytes

from .client import request, wait_until
from .conftest import GatewayServer, WireConfig, only_asgi

pytestmark = pytest.mark.wire

#: "Soon after": the ASGI shell starts watching 50 ms into a request; the rest is slack.
SOON = 1.5
CHUNK = pattern_bytes(64 * 1024)


class ObservingUpstream(LoopbackServer):
    """Knows when the gateway hangs up on it.

    ``/slow`` answers after ``delay`` unless the connection closes first; ``/stream`` sends
    chunks until its send fails; ``/quiet`` sends its head and one chunk, then waits for the close;
    anything else is answered at once with ``{"target": ...}``. A request whose body never
    fully arrives counts as a close too. ``closed_at`` holds the monotonic times it saw closes.
    """

    def __init__(self, delay: float = 10.0) -> None:
        super().__init__()
        self.delay = delay
        self.closed_at: list[float] = []

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        reader = self._reader(sock, connection_id)
        while True:
            heads: list[RecordedRequest] = []
            seen = reader.read_request(on_head=heads.append)
            if seen is None:
                if heads:  # the head came, the body never finished
                    self.closed_at.append(time.monotonic())
                return
            self._record(seen)
            if seen.path == "/slow" and self._hung_up(sock, self.delay):
                return
            if seen.path == "/stream":
                self._stream(sock)
                return
            if seen.path == "/quiet":
                sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                sock.sendall(b"%x\r\n%b\r\n" % (len(CHUNK), CHUNK))
                self._hung_up(sock, self.delay)
                return
            body = json.dumps({"target": seen.target}).encode()
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
            )

    def _hung_up(self, sock: socket.socket, wait: float) -> bool:
        """Waits up to ``wait`` for the gateway to close the connection; notes when it did."""
        deadline = time.monotonic() + wait
        while not self._stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], min(left, 0.05))
            if not readable:
                continue
            try:
                gone = sock.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                gone = True
            if gone:
                self.closed_at.append(time.monotonic())
                return True
            return False  # bytes, not a close: another request, not ours to judge
        return False

    def _stream(self, sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        frame = b"%x\r\n%b\r\n" % (len(CHUNK), CHUNK)
        try:
            for _ in range(32 * 1024):  # 2 GiB at most: far more than any buffer holds
                if self._stopping.is_set():
                    return
                sock.sendall(frame)
        except OSError:
            self.closed_at.append(time.monotonic())


def leave_after(conn_socket: socket.socket, seconds: float) -> float:
    """Waits, then closes the client socket; returns when it closed."""
    time.sleep(seconds)
    conn_socket.close()
    return time.monotonic()


def assert_served_afterwards(server: GatewayServer, upstream: ObservingUpstream) -> None:
    """Requests after the abandoned one each get their own answer, on fresh or pooled
    connections alike."""
    for n in range(3):
        response = server.get(f"/api/after-{n}")
        assert response.status == 200, (response.status, response.body)
        assert response.json() == {"target": f"/after-{n}"}


def test_a_client_leaving_a_slow_request_does_not_harm_the_next(
    wire: WireConfig, gateway_server: GatewayServer
):
    with ObservingUpstream(delay=1.0) as upstream:
        wire.route(upstream, service={"retries": 0})
        conn = gateway_server.connect()
        conn.send(request("GET /api/slow HTTP/1.1", "Host: wire.test"))
        upstream.wait_for_requests(1)
        leave_after(conn.sock, 0.3)
        assert_served_afterwards(gateway_server, upstream)
        time.sleep(1.0)  # the abandoned exchange is over in both shells by now
        assert_served_afterwards(gateway_server, upstream)
        assert [r.target for r in upstream.requests].count("/slow") == 1  # never retried


@only_asgi
def test_the_upstream_is_closed_soon_after_the_client_leaves_a_slow_request(
    wire: WireConfig, gateway_server: GatewayServer
):
    """The ASGI shell cancels an exchange whose client is gone, closing the upstream connection
    rather than waiting (10 s here) for an answer nobody will read."""
    with ObservingUpstream(delay=10.0) as upstream:
        wire.route(upstream, service={"retries": 0})
        conn = gateway_server.connect()
        conn.send(request("GET /api/slow HTTP/1.1", "Host: wire.test"))
        upstream.wait_for_requests(1)
        left = leave_after(conn.sock, 0.3)
        wait_until(lambda: bool(upstream.closed_at), SOON + 1)
        assert upstream.closed_at[0] - left < SOON
        assert_served_afterwards(gateway_server, upstream)


def test_a_client_leaving_mid_download_stops_the_upstream(
    wire: WireConfig, gateway_server: GatewayServer
):
    with ObservingUpstream() as upstream:
        wire.route(upstream, service={"retries": 0})
        with gateway_server.connect() as conn:
            conn.send(request("GET /api/stream HTTP/1.1", "Host: wire.test"))
            received = 0
            while received < 4 * 1024 * 1024:
                received += len(conn.sock.recv(1 << 20))
            left = leave_after(conn.sock, 0)  # unread bytes wait: the close is a reset
        wait_until(lambda: bool(upstream.closed_at), SOON + 1)
        assert upstream.closed_at[0] - left < SOON
        assert_served_afterwards(gateway_server, upstream)


@only_asgi
def test_a_client_leaving_a_quiet_stream_closes_the_upstream(
    wire: WireConfig, gateway_server: GatewayServer
):
    """Nothing is written while the stream is quiet, so only the ASGI shell's watch notices."""
    with ObservingUpstream(delay=10.0) as upstream:
        wire.route(upstream, service={"retries": 0})
        conn = gateway_server.connect()
        conn.send(request("GET /api/quiet HTTP/1.1", "Host: wire.test"))
        received = 0
        while received < len(CHUNK):
            received += len(conn.sock.recv(1 << 20))
        left = leave_after(conn.sock, 0.3)
        wait_until(lambda: bool(upstream.closed_at), SOON + 1)
        assert upstream.closed_at[0] - left < SOON
        assert_served_afterwards(gateway_server, upstream)


def test_a_client_leaving_mid_upload_closes_the_upstream(
    wire: WireConfig, gateway_server: GatewayServer
):
    with ObservingUpstream() as upstream:
        wire.route(upstream, service={"retries": 0})
        conn = gateway_server.connect()
        conn.send(
            request(
                "POST /api/upload HTTP/1.1", "Host: wire.test", f"Content-Length: {10 * 1024**2}"
            )
        )
        for _ in range(16):  # 1 MiB of the promised 10
            conn.send(CHUNK)
        wait_until(lambda: upstream.bytes_received > 512 * 1024, 5)
        left = leave_after(conn.sock, 0.3)
        wait_until(lambda: bool(upstream.closed_at), SOON + 1)
        assert upstream.closed_at[0] - left < SOON
        assert upstream.request_count == 0  # the upstream never got a whole request
        assert_served_afterwards(gateway_server, upstream)
