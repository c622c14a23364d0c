"""Real HTTP/1.1 upstream servers on loopback, for testing a gateway end to end.

Mocks at the HTTP-client level cannot show what a reverse proxy actually puts on the wire, so
these are genuine servers on ``127.0.0.1`` (or any ``host``) port 0::

    with EchoUpstream() as upstream:
        ...point a route at upstream.url, send a request through the gateway...
        (request,) = upstream.wait_for_requests(1)
        assert request.target == "/a%2Fb?x=1&x=2"

:class:`EchoUpstream` records every request byte-exactly and answers with a JSON echo, or with
whatever a ``responder`` returns. The fault servers (:class:`SlowUpstream`,
:class:`ResetUpstream`, :class:`GarbageUpstream`, :class:`BlackholeUpstream`,
:class:`TruncatedUpstream`) misbehave in one specific way each; :func:`unused_port` gives a port
that refuses connections.
"""

from __future__ import annotations

import contextlib
import http
import json
import socket
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httptools

from django_gateway.testing.rawservers import (
    DEFAULT_KEEP_BODY_LIMIT,
    LoopbackServer,
    RecordedRequest,
    RequestReader,
)

__all__ = [
    "DEFAULT_KEEP_BODY_LIMIT",
    "BlackholeUpstream",
    "EchoUpstream",
    "GarbageUpstream",
    "LoopbackServer",
    "PatternBody",
    "RecordedRequest",
    "Reply",
    "RequestReader",
    "ResetUpstream",
    "Responder",
    "SlowUpstream",
    "TruncatedUpstream",
    "echo_reply",
    "json_reply",
    "pattern_bytes",
    "redirect_to",
    "stream_bytes",
    "unused_port",
]

_PATTERN = bytes(range(256))
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass
class Reply:
    """What an :class:`EchoUpstream` sends back; also usable directly as a constant responder.

    ``headers`` are sent exactly as given (order, case, repeats). Framing headers are added only
    when missing: with ``chunked=None`` a ``bytes`` body gets ``Content-Length`` and an iterable
    body is sent chunked, unless ``headers`` already carry ``Content-Length`` or
    ``Transfer-Encoding`` (then the body is sent raw, or chunk-encoded if that header is there).
    An iterable body with ``chunked=False`` and no ``Content-Length`` is delimited by closing the
    connection. If the iterable raises, the connection is dropped mid-body.
    """

    status: int = 200
    reason: str = ""
    headers: Sequence[tuple[str, str]] = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""
    chunked: bool | None = None
    #: Seconds to wait before sending the head (interrupted by ``stop()``).
    delay: float = 0.0
    #: Seconds to wait between body chunks, to test streaming and read timeouts.
    chunk_delay: float = 0.0
    #: Close the connection after this response.
    close: bool = False

    def __call__(self, request: RecordedRequest) -> Reply:
        """Answer every request with this reply, so ``EchoUpstream(responder=Reply(204))`` works.

        Iterable bodies are iterated once per response, so use a re-iterable one
        (e.g. :class:`PatternBody`), not a generator.
        """
        return self


Responder = Callable[[RecordedRequest], Reply]


def json_reply(obj: Any, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Reply:
    """A JSON response (``Content-Type: application/json``, Content-Length)."""
    return Reply(
        status=status,
        headers=[("Content-Type", "application/json"), *headers],
        body=json.dumps(obj).encode(),
    )


def echo_reply(request: RecordedRequest) -> Reply:
    """The default :class:`EchoUpstream` answer: what arrived, as JSON, so tests can look from
    the client side too (e.g. through the gateway)."""
    return json_reply(
        {
            "method": request.method,
            "target": request.target,
            "path": request.path,
            "query": request.query,
            "headers": [[name, value] for name, value in request.headers],
            "body_size": request.body_size,
            "body_sha256": request.body_sha256,
        }
    )


def redirect_to(location: str, status: int = 302) -> Reply:
    """A redirect to ``location`` (sent verbatim, so relative and absolute both work)."""
    return Reply(status=status, headers=[("Location", location)])


def pattern_bytes(size: int, offset: int = 0) -> bytes:
    """``size`` bytes of the deterministic pattern :func:`stream_bytes` sends, from ``offset``.

    Tests build expected content or hashes from this instead of shipping fixture files.
    """
    start = offset % len(_PATTERN)
    return (_PATTERN * ((start + size) // len(_PATTERN) + 1))[start : start + size]


@dataclass(frozen=True)
class PatternBody:
    """A re-iterable body of ``total_size`` pattern bytes in ``chunk_size`` pieces.

    It is generated on the fly, so hundreds of megabytes cost no memory.
    """

    total_size: int
    chunk_size: int = 64 * 1024

    def __iter__(self) -> Iterator[bytes]:
        block = pattern_bytes(self.chunk_size + len(_PATTERN))
        sent = 0
        while sent < self.total_size:
            size = min(self.chunk_size, self.total_size - sent)
            start = sent % len(_PATTERN)
            yield block[start : start + size]
            sent += size


def stream_bytes(
    total_size: int,
    chunk_size: int = 64 * 1024,
    *,
    chunked: bool = True,
    chunk_delay: float = 0.0,
    headers: Iterable[tuple[str, str]] = (),
) -> Reply:
    """A streamed download of :func:`pattern_bytes`, chunked or (``chunked=False``) with
    Content-Length; either way it is produced piece by piece."""
    all_headers = [("Content-Type", "application/octet-stream"), *headers]
    if not chunked:
        all_headers.append(("Content-Length", str(total_size)))
    return Reply(
        headers=all_headers,
        body=PatternBody(total_size, chunk_size),
        chunked=chunked,
        chunk_delay=chunk_delay,
    )


class EchoUpstream(LoopbackServer):
    """A keep-alive HTTP/1.1 server that records every request and answers via ``responder``.

    Request bodies (Content-Length or chunked) are streamed and hashed, never held beyond
    ``keep_body_limit``, so multi-hundred-megabyte uploads are fine. ``Expect: 100-continue`` is
    honoured, HEAD responses carry the headers GET would, and ``Connection: close`` is respected.
    A responder that raises produces a 500 and lands in :attr:`errors`.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        host: str = "127.0.0.1",
        *,
        keep_body_limit: int = DEFAULT_KEEP_BODY_LIMIT,
        port: int = 0,
    ) -> None:
        super().__init__(host, keep_body_limit=keep_body_limit, port=port)
        self.responder: Responder = responder or echo_reply

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        reader = self._reader(sock, connection_id)
        while not self._stopping.is_set():
            try:
                request = reader.read_request(on_head=lambda head: _maybe_continue(sock, head))
            except httptools.HttpParserError as exc:
                reply = Reply(400, headers=[("Content-Type", "text/plain")], body=str(exc).encode())
                _send_reply(sock, None, replace(reply, close=True), keep_alive=False)
                break
            if request is None:
                return
            self._record(request)
            answer = self._make_reply(request)
            if answer is None or not _send_reply(
                sock, request, answer, keep_alive=reader.keep_alive, sleep=self._sleep
            ):
                break
        _close_gracefully(sock)

    def _make_reply(self, request: RecordedRequest) -> Reply | None:
        """The reply for ``request``, or ``None`` to drop the connection (e.g. while stopping)."""
        try:
            return self.responder(request)
        except Exception as exc:
            self.errors.append(exc)
            body = f"responder failed: {exc!r}".encode()
            return Reply(500, headers=[("Content-Type", "text/plain")], body=body, close=True)


class SlowUpstream(EchoUpstream):
    """An :class:`EchoUpstream` that waits ``delay`` seconds after reading each request.

    The request is recorded before the wait, so a test can tell "the gateway timed out" from
    "the request never arrived". :meth:`stop` cuts the wait short.
    """

    def __init__(
        self, delay: float, responder: Responder | None = None, host: str = "127.0.0.1"
    ) -> None:
        super().__init__(responder, host)
        self.delay = delay

    def _make_reply(self, request: RecordedRequest) -> Reply | None:
        return super()._make_reply(request) if self._sleep(self.delay) else None


def unused_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` with nothing listening, for connection-refused tests.

    The kernel picks a free port, which is released at once; it stays refused unless something
    else binds it in the meantime, which is unlikely within one test.
    """
    family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class ResetUpstream(LoopbackServer):
    """Resets every connection (RST via ``SO_LINGER`` 0), after the request head or immediately.

    With ``after_request=True`` the gateway has already sent a request when the reset arrives,
    which is the case that must not be retried blindly for non-idempotent methods. ``delay``
    seconds pass between reading the request and the reset: a failure that is retried but costs
    time, for tests of the deadlines around retries.
    """

    def __init__(
        self, after_request: bool = True, host: str = "127.0.0.1", *, delay: float = 0.0
    ) -> None:
        super().__init__(host)
        self.after_request = after_request
        self.delay = delay

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        try:
            if self.after_request:
                request = self._reader(sock, connection_id).read_request(head_only=True)
                if request is not None:
                    self._record(request)
                if self.delay:
                    self._sleep(self.delay)
        finally:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class GarbageUpstream(LoopbackServer):
    """Reads one request, answers with bytes that are not HTTP, and closes."""

    def __init__(
        self, payload: bytes = b"this is not HTTP\r\n\r\n", host: str = "127.0.0.1"
    ) -> None:
        super().__init__(host)
        self.payload = payload

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        request = self._reader(sock, connection_id).read_request()
        if request is not None:
            self._record(request)
            sock.sendall(self.payload)
            _close_gracefully(sock)


class BlackholeUpstream(LoopbackServer):
    """Accepts and reads (recording requests) but never answers; connections stay open."""

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        reader = self._reader(sock, connection_id)
        while (request := reader.read_request()) is not None:
            self._record(request)


class TruncatedUpstream(LoopbackServer):
    """Promises ``declared_length`` body bytes, sends ``sent_length`` of them, and closes."""

    def __init__(
        self, declared_length: int = 1000, sent_length: int = 10, host: str = "127.0.0.1"
    ) -> None:
        super().__init__(host)
        self.declared_length = declared_length
        self.sent_length = sent_length

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        request = self._reader(sock, connection_id).read_request()
        if request is not None:
            self._record(request)
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {self.declared_length}\r\n\r\n"
            )
            sock.sendall(head.encode("ascii") + b"x" * self.sent_length)
            _close_gracefully(sock)


def _close_gracefully(sock: socket.socket, linger: float = 1.0) -> None:
    """Send FIN and drain what the client still sends, so our last bytes are not lost to a RST."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(linger)
        while sock.recv(64 * 1024):
            pass


def _maybe_continue(sock: socket.socket, head: RecordedRequest) -> None:
    if head.http_version == "1.1" and (head.header("Expect") or "").lower() == "100-continue":
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")


def _send_reply(
    sock: socket.socket,
    request: RecordedRequest | None,
    reply: Reply,
    *,
    keep_alive: bool,
    sleep: Callable[[float], bool] = lambda seconds: True,
) -> bool:
    """Write ``reply``; returns whether the connection may carry another request."""
    if reply.delay and not sleep(reply.delay):
        return False
    names = {name.lower() for name, _ in reply.headers}
    headers = list(reply.headers)
    body = reply.body
    has_body = not (100 <= reply.status < 200 or reply.status in _NO_BODY_STATUSES)
    chunked = reply.chunked
    if chunked is None:
        chunked = "transfer-encoding" in names or (
            "content-length" not in names and not isinstance(body, bytes)
        )
        if request is not None and request.http_version == "1.0":
            chunked = chunked and "transfer-encoding" in names  # 1.0 clients cannot de-chunk
    close = reply.close or not keep_alive
    if has_body and chunked and "transfer-encoding" not in names:
        headers.append(("Transfer-Encoding", "chunked"))
    elif has_body and not chunked and "content-length" not in names:
        if isinstance(body, bytes):
            headers.append(("Content-Length", str(len(body))))
        else:
            close = True  # the body is delimited by closing the connection
    if close and "connection" not in names:
        headers.append(("Connection", "close"))
    reason = reply.reason or _default_reason(reply.status)
    lines = [f"HTTP/1.1 {reply.status} {reason}\r\n", *(f"{n}: {v}\r\n" for n, v in headers)]
    sock.sendall(("".join(lines) + "\r\n").encode("latin-1"))
    if not has_body or (request is not None and request.method == "HEAD"):
        return not close
    first = True
    for chunk in [body] if isinstance(body, bytes) else body:
        if not chunk:
            continue  # an empty chunk would end a chunked body early
        if not first and reply.chunk_delay and not sleep(reply.chunk_delay):
            return False
        first = False
        sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
    if chunked:
        sock.sendall(b"0\r\n\r\n")
    return not close


def _default_reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
