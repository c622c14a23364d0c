"""The client side of the wire tests: raw requests, and responses parsed with llhttp.

Requests are written byte for byte (:func:`request` adds no header); responses are parsed by
``httptools``, never by hand, and keep header names' case and order.
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httptools

from django_gateway.testing.rawservers import HeaderLookup

HOST = "127.0.0.1"


# -- responses ---------------------------------------------------------------------------------


@dataclass
class RawResponse(HeaderLookup):
    """One response exactly as it came off the client socket (header names keep their case)."""

    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: False when the connection closed before the message ended (what a HEAD response looks
    #: like to a parser that does not know the request was HEAD).
    complete: bool = False

    @property
    def header_names(self) -> set[str]:
        return {name.lower() for name, _ in self.headers}

    @property
    def is_problem(self) -> bool:
        return (self.header("content-type") or "").startswith("application/problem+json")

    def json(self) -> Any:
        return json.loads(self.body)


class WireConnection:
    """One client connection: send raw bytes, read responses with llhttp.

    ``body_sink``, when set, receives body pieces instead of them being kept (big downloads);
    ``on_headers``, when set, is called with each response once its head is in.
    """

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.body_sink: Callable[[bytes], None] | None = None
        self.on_headers: Callable[[RawResponse], None] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._current: RawResponse | None = None
        self._body = bytearray()
        self._done: deque[RawResponse] = deque()
        #: 1xx responses received so far, in order.
        self.interim: list[RawResponse] = []
        self._eof = False

    def __enter__(self) -> WireConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def feed(self, data: bytes) -> None:
        """Parse bytes read from the socket by the caller (who paces the reads itself)."""
        if data:
            self._parser.feed_data(data)
        else:
            self._eof = True

    def read_response(self, *, until_eof: bool = False, recv_size: int = 1 << 20) -> RawResponse:
        """The next response. ``until_eof`` reads until the server closes the connection and
        returns what arrived even if incomplete: for HEAD, where any body byte is a bug."""
        while until_eof or not self._done:
            if self._eof:
                break
            self.feed(self.sock.recv(recv_size))
        if self._done:
            return self._done.popleft()
        if until_eof and self._current is not None and self._current.status:
            self._current.body = bytes(self._body)
            return self._current
        raise ConnectionError("the server closed the connection before a complete response")

    def at_eof(self, wait: float = 2.0) -> bool:
        """Whether the server closes the connection (with nothing more sent) within ``wait``."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False

    # llhttp callbacks

    def on_message_begin(self) -> None:
        self._current = RawResponse()
        self._body = bytearray()

    def on_status(self, reason: bytes) -> None:
        assert self._current is not None
        self._current.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._current is not None
        self._current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self._current is not None
        self._current.status = self._parser.get_status_code()
        if self.on_headers is not None:
            self.on_headers(self._current)

    def on_body(self, body: bytes) -> None:
        if self.body_sink is not None:
            self.body_sink(body)
        else:
            self._body += body

    def on_message_complete(self) -> None:
        assert self._current is not None
        self._current.body = bytes(self._body)
        self._current.complete = True
        if not 100 <= self._current.status < 200:  # interim responses (100 Continue) are skipped
            self._done.append(self._current)
        else:
            self.interim.append(self._current)
        self._current = None


def request(*lines: str, body: bytes = b"") -> bytes:
    """A raw HTTP/1.x request from its head lines, exactly as written (no header is added)."""
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> float:
    """Poll ``predicate`` until true; returns the seconds it took, raises on timeout."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def assert_problem(response: RawResponse, status: int) -> None:
    """``response`` is the gateway's own problem+json answer with ``status``, naming its request
    id as its header does."""
    assert response.status == status, (response.status, response.body)
    assert response.is_problem, response.headers
    problem = response.json()
    assert problem["status"] == status
    assert problem["request_id"] == response.header("x-request-id")
