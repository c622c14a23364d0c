"""HTTP/1.1 over a pooled socket, with llhttp (``httptools``) parsing every upstream byte.

The transport is one call, :meth:`Transport.send`, so an async client can replace it later. It
never hand-parses framing: status line, headers, chunked and length-delimited bodies all go through
``httptools.HttpResponseParser``. It says where a low-level error happened; what the client
gets for it is decided in one place, :mod:`.failures` (its table is the whole story).

Deadlines (docs/proxying.md, Timeouts). A try has ``Timeouts.total`` from its start to the end of
what is read before :meth:`Transport.send` returns: the head, and a body small enough to buffer.
A streamed body has only the per-read ``Timeouts.read``, so a slow stream (server-sent events)
flows as long as it keeps sending; ``Timeouts.response`` (a route's ``max_response_duration``),
when set, bounds everything from the try's start to the last body byte, and a stream still
running then ends in :class:`ResponseCut`. Without it, a streamed read costs no clock call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from .body import RequestBody
from .failures import (
    ResponseCut,
    body_failure,
    head_failure,
    parse_failure,
    send_failure,
    too_late,
)
from .pool import KERNEL_TIMEOUTS, Connection, ConnectionPool, Endpoint

Body = TypeVar("Body")

RECV_SIZE = 64 * 1024
# Bodies announced at most this large are read before the response is handed on: sent in one write,
# and the connection goes back to the pool before the client has read a byte.
BUFFER_LIMIT = 64 * 1024


class _Expired(Exception):
    """A deadline passed while reading the body; the caller knows which one and what it means."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    read: float
    total: float
    response: float | None = None  # max_response_duration: the try's start to the last body byte

    def deadlines(self, started: float) -> tuple[float, float | None]:
        """For a try started at ``started`` (monotonic): the deadline of what is read before
        ``send`` returns, and when the whole response expires (``None``: never)."""
        deadline = started + self.total
        expires = None if self.response is None else started + self.response
        if expires is not None and expires < deadline:
            deadline = expires
        return deadline, expires


@dataclass(slots=True)
class UpstreamRequest(Generic[Body]):
    """One try's request. ``Body`` is the shell's: ``RequestBody`` (WSGI) or ``AsyncRequestBody``
    (ASGI); everything else is the plan's."""

    method: str
    target: str  # encoded path and query, as it goes on the request line
    headers: list[tuple[str, str]]
    body: Body | None

    def head(self, framing_header: str | None) -> bytes:
        """The request line and headers as they go on the wire (one copy for both transports)."""
        lines = [f"{name}: {value}\r\n" for name, value in self.headers]
        if framing_header is not None:
            lines.append(framing_header + "\r\n")
        return f"{self.method} {self.target} HTTP/1.1\r\n{''.join(lines)}\r\n".encode("latin-1")


class ResponseCallbacks:
    """The httptools callbacks that collect one response at a time; 1xx interim heads are
    skipped. Both transports' parsers call these (the sync :class:`_Reader`, the async
    connection protocol), so what counts as the head, the body and the end is decided once."""

    __slots__ = (
        "chunks",
        "complete",
        "head_done",
        "headers",
        "keep_alive",
        "parser",
        "reason",
        "status",
    )

    parser: HttpResponseParser
    headers: list[tuple[bytes, bytes]]
    chunks: list[bytes]
    reason: bytes
    status: int
    head_done: bool
    complete: bool
    keep_alive: bool

    def on_message_begin(self) -> None:
        self.headers = []

    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # interim (100 Continue, 103 Early Hints): the real head follows
        self.status = status
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True
            # llhttp only knows whether the connection persists once the message has ended.
            self.keep_alive = self.parser.should_keep_alive()

    def take_chunks(self) -> list[bytes]:
        chunks, self.chunks = self.chunks, []
        return chunks


class _Reader(ResponseCallbacks):
    """The sync transport's parser state, kept per connection.

    One reader (and one llhttp parser) serves every response of a keep-alive connection:
    :meth:`reset` readies it for the next one, which is cheaper than a new parser per request.
    """

    __slots__ = ()

    def __init__(self) -> None:
        self.parser = HttpResponseParser(self)
        self.reset()

    def reset(self) -> None:
        self.headers = []
        self.chunks = []
        self.reason = b""
        self.status = 0
        self.head_done = False
        self.complete = False
        self.keep_alive = False


class UpstreamResponse:
    """A response whose head has arrived; the body streams from :meth:`__iter__`.

    Iterating to the end returns the connection to the pool; :meth:`close` before that drops it.
    Everything the response needs is taken from the connection's reader before the connection
    goes back to the pool, where another request may reuse that reader at once.

    ``deadline`` bounds the read of a body small enough to buffer (``GatewayTimeout``, still a
    504); ``expires`` (monotonic time, or ``None``) bounds the streamed body (:class:`ResponseCut`).
    ``on_cut``, when set, is called with the :class:`ResponseCut` before it is raised.
    """

    def __init__(
        self,
        transport: Transport,
        conn: Connection,
        reader: _Reader,
        head_only: bool,
        read_timeout: float,
        deadline: float,
        expires: float | None = None,
    ) -> None:
        self.status = reader.status
        self.reason = reader.reason.decode("latin-1")
        self.headers = reader.headers
        self._transport = transport
        self._conn: Connection | None = conn
        self._reader = reader
        self._read_timeout = read_timeout
        self._expires = expires
        self.on_cut: Callable[[ResponseCut], None] | None = None
        self._pending = reader.take_chunks()
        self.complete = reader.complete
        length: bytes | None = None
        self._eof_ends_body = True
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"content-length":
                length, self._eof_ends_body = value, False
            elif lower == b"transfer-encoding":
                self._eof_ends_body = False
        if head_only:  # HEAD: no body follows, whatever the headers say
            self._pending = []
            self.complete = True
            self._finish(keep_alive=False)
        elif self.complete:
            self._finish(reader.keep_alive)
        elif length is not None and length.isdigit() and int(length) <= BUFFER_LIMIT:
            try:
                while not self.complete:
                    self._pull(deadline)
            except _Expired:
                raise too_late(
                    "send the whole response", response_limit=deadline == expires
                ) from None

    def buffered_body(self) -> bytes:
        """The whole body, when it arrived with the head (``complete`` is true)."""
        return b"".join(self._pending)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            if self._pending:
                chunks, self._pending = self._pending, []
                yield from chunks
            if self.complete:
                return
            try:
                self._pull(self._expires)
            except _Expired:
                cut = ResponseCut(
                    "The response took longer than the route's max_response_duration; "
                    "its body was cut off."
                )
                if self.on_cut is not None:
                    self.on_cut(cut)
                raise cut from None

    def _pull(self, deadline: float | None) -> None:
        """Receive and parse one piece of the body; completes the response at its end."""
        reader = self._reader
        data = self._recv(deadline)
        if not data:
            if not self._eof_ends_body:
                self.close()
                raise body_failure(None)
            self.complete = True
            self._finish(keep_alive=False)
            return
        try:
            reader.parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:
            self.close()
            raise parse_failure(exc, in_body=True) from exc
        self._pending.extend(reader.take_chunks())
        if reader.complete:
            self.complete = True
            self._finish(reader.keep_alive)

    def _recv(self, deadline: float | None) -> bytes:
        """One receive, bounded by ``read_timeout`` and, nearer its end, by ``deadline``: the
        socket timeout changes (a system call) only within ``read_timeout`` of the deadline."""
        conn = self._conn
        if conn is None:
            return b""
        timeout = self._read_timeout
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining < timeout:
                if remaining <= 0:
                    self.close()
                    raise _Expired
                timeout = remaining
        try:
            conn.set_timeout(timeout)
            return conn.sock.recv(RECV_SIZE)
        except KERNEL_TIMEOUTS as exc:
            self.close()
            if timeout < self._read_timeout:
                raise _Expired from exc
            raise body_failure(exc, timed_out=True) from exc
        except OSError as exc:
            self.close()
            raise body_failure(exc) from exc

    def _finish(self, keep_alive: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if keep_alive:
            self._transport.pool.release(conn)
        else:
            conn.sock.close()

    def close(self) -> None:
        """Drop the connection unless the body was read to its end (then it is already pooled)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.sock.close()


class Transport:
    """Sends one request to one endpoint and returns once the response head has arrived."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def send(
        self,
        endpoint: Endpoint,
        request: UpstreamRequest[RequestBody],
        timeouts: Timeouts,
        *,
        replayable: bool = False,
    ) -> UpstreamResponse:
        """``replayable``: the caller resends on a fresh connection if a pooled one is dead, so
        the pool may skip its staleness probe."""
        started = time.monotonic()
        deadline, expires = timeouts.deadlines(started)
        conn = self.pool.acquire(
            endpoint, min(timeouts.connect, deadline - started), check=not replayable
        )
        try:
            self._write(conn, request, timeouts.read)
            reader = self._read_head(conn, timeouts.read, deadline, expires)
        except BaseException:
            conn.sock.close()
            raise
        return UpstreamResponse(
            self, conn, reader, request.method == "HEAD", timeouts.read, deadline, expires
        )

    def _write(
        self, conn: Connection, request: UpstreamRequest[RequestBody], read_timeout: float
    ) -> None:
        body = request.body
        head = request.head(None if body is None else body.framing_header)
        sock = conn.sock
        conn.set_timeout(read_timeout)
        try:
            if body is None:
                sock.sendall(head)
                return
            first = True
            for piece in body.framed_chunks():
                sock.sendall(head + piece if first else piece)
                first = False
            if first:
                sock.sendall(head)
        except KERNEL_TIMEOUTS as exc:
            raise send_failure(exc, timed_out=True, reused=conn.reused) from exc
        except OSError as exc:
            raise send_failure(exc, timed_out=False, reused=conn.reused) from exc

    def _read_head(
        self, conn: Connection, read_timeout: float, deadline: float, expires: float | None
    ) -> _Reader:
        reader: _Reader | None = conn.reader  # Any in the pool, which sits below this module
        if reader is None:
            reader = conn.reader = _Reader()
        else:
            reader.reset()
        sock = conn.sock
        received = False
        while not reader.head_done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise too_late("answer", response_limit=deadline == expires)
            conn.set_timeout(min(read_timeout, remaining))
            try:
                data = sock.recv(RECV_SIZE)
            except KERNEL_TIMEOUTS as exc:
                raise too_late("answer", response_limit=deadline == expires) from exc
            except OSError as exc:
                raise head_failure(exc, received=received, reused=conn.reused) from exc
            if not data:
                raise head_failure(None, received=received, reused=conn.reused)
            received = True
            try:
                reader.parser.feed_data(data)
            except (HttpParserError, HttpParserUpgrade) as exc:  # not one of the other
                raise parse_failure(exc, in_body=False) from exc
        return reader
