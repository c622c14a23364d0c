"""HTTP/1.1 to an upstream on the asyncio event loop: :class:`.transport.Transport`, awaited.

The ASGI shell's transport behaves as the WSGI one, deadline for deadline and failure for
failure (both read their errors from :mod:`.failures`' table): ``Timeouts.total`` bounds a try
from its start to the end of what is read before :meth:`AsyncTransport.send` returns (the head,
and a body announced at most :data:`.transport.BUFFER_LIMIT` long); a streamed body has the
per-read ``Timeouts.read``; ``Timeouts.response`` (``max_response_duration``) bounds everything to
the last body byte, and a stream still running then ends in :class:`.failures.ResponseCut`.
A "read" here is a wait for the protocol to report bytes (:meth:`.aio_pool.AsyncConnection.wait`).

What the event loop adds is cancellation: a task cancelled anywhere (the client went away) drops
its connection, which is never pooled half-read, and the request body's generator is closed.
Flow control lives in the connection (:mod:`.aio_pool`): the request body waits for the upstream
to take what was written, and the response body is read no faster than it is consumed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

from ..exceptions import BadGateway
from .aio_body import AsyncRequestBody
from .aio_pool import AsyncConnection, AsyncConnectionPool, open_connection
from .failures import (
    ResponseCut,
    body_failure,
    head_failure,
    parse_failure,
    send_failure,
    too_late,
)
from .pool import Endpoint
from .transport import BUFFER_LIMIT, Timeouts, UpstreamRequest


class _Expired(Exception):
    """A deadline passed while reading the body; the caller knows which one and what it means."""


def _lost(conn: AsyncConnection) -> OSError:
    return conn.error or ConnectionResetError("the upstream closed the connection")


def _not_http(conn: AsyncConnection, *, in_body: bool) -> BadGateway:
    """The parser's verdict as the gateway's error (an unasked protocol switch included)."""
    assert conn.failure is not None
    return parse_failure(conn.failure, in_body=in_body)


class AsyncUpstreamResponse:
    """A response whose head has arrived; the body streams from ``async for``.

    Reading the body to its end returns the connection to the pool; :meth:`close` before that
    drops it. ``expires`` (monotonic time, or ``None``) bounds the streamed body
    (:class:`ResponseCut`); ``on_cut``, when set, is called with the cut before it is raised.
    """

    __slots__ = (
        "_conn",
        "_eof_ends_body",
        "_expires",
        "_pending",
        "_pool",
        "_read_timeout",
        "_small",
        "complete",
        "headers",
        "on_cut",
        "reason",
        "status",
    )

    def __init__(
        self,
        pool: AsyncConnectionPool,
        conn: AsyncConnection,
        head_only: bool,
        read_timeout: float,
        expires: float | None,
    ) -> None:
        self.status = conn.status
        self.reason = conn.reason.decode("latin-1")
        self.headers = conn.headers
        self.on_cut: Callable[[ResponseCut], None] | None = None
        self._pool = pool
        self._conn: AsyncConnection | None = conn
        self._read_timeout = read_timeout
        self._expires = expires
        self._pending = conn.take_chunks()
        self.complete = conn.complete
        self._eof_ends_body = False
        self._small = False  # announced small enough to read before the response is handed on
        if head_only:  # HEAD: no body follows, whatever the headers say
            self._pending = []
            self.complete = True
            self._finish(keep_alive=False)
        elif self.complete:
            self._finish(conn.keep_alive)
        else:
            length: bytes | None = None
            self._eof_ends_body = True
            for name, value in self.headers:
                lower = name.lower()
                if lower == b"content-length":
                    length, self._eof_ends_body = value, False
                elif lower == b"transfer-encoding":
                    self._eof_ends_body = False
            self._small = length is not None and length.isdigit() and int(length) <= BUFFER_LIMIT

    def buffered_body(self) -> bytes:
        """The whole body, when it arrived with the head (``complete`` is true)."""
        return b"".join(self._pending)

    async def _read_small(self, deadline: float) -> None:
        """Read a small body to its end by ``deadline`` (else 504: nothing was sent)."""
        try:
            while not self.complete:
                await self._pull(deadline)
        except _Expired:
            limit = deadline == self._expires
            raise too_late("send the whole response", response_limit=limit) from None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                if self._pending:
                    chunks, self._pending = self._pending, []
                    for chunk in chunks:
                        yield chunk
                if self.complete:
                    return
                await self._pull(self._expires)
        except _Expired:
            self.close()
            cut = ResponseCut(
                "The response took longer than the route's max_response_duration; "
                "its body was cut off."
            )
            if self.on_cut is not None:
                self.on_cut(cut)
            raise cut from None
        except BaseException:  # a failure, a cancelled reader, or one that left (GeneratorExit)
            self.close()
            raise

    async def _pull(self, deadline: float | None) -> None:
        """Wait for more of the body, or its end; the caller drops the connection on failure."""
        conn = self._conn
        if conn is None:
            raise body_failure(None)
        while True:
            chunks = conn.take_chunks()
            if chunks:
                self._pending += chunks
            if conn.complete:
                self.complete = True
                self._finish(conn.keep_alive)
                return
            if chunks:
                return
            if conn.failure is not None:
                raise _not_http(conn, in_body=True)
            if conn.closed:
                if conn.error is None and self._eof_ends_body:
                    self.complete = True
                    self._finish(keep_alive=False)
                    return
                raise body_failure(conn.error)
            timeout, limited = self._read_timeout, False
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining < timeout:
                    if remaining <= 0:
                        raise _Expired
                    timeout, limited = remaining, True
            if not await conn.wait(timeout):
                if limited:
                    raise _Expired
                raise body_failure(TimeoutError(), timed_out=True)

    def _finish(self, keep_alive: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if keep_alive:
            self._pool.release(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Drop the connection unless the body was read to its end (then it is already pooled)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def aclose(self) -> None:
        self.close()


class AsyncTransport:
    """Sends one request to one endpoint and returns once the response head has arrived."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def send(
        self,
        endpoint: Endpoint,
        request: UpstreamRequest[AsyncRequestBody],
        timeouts: Timeouts,
        *,
        replayable: bool = False,
    ) -> AsyncUpstreamResponse:
        """``replayable``: the caller resends on a fresh connection if a pooled one is dead, so
        the pool may skip its staleness probe."""
        started = time.monotonic()
        deadline, expires = timeouts.deadlines(started)
        conn = self.pool.take(endpoint, check=not replayable)
        if conn is None:
            conn = await open_connection(endpoint, min(timeouts.connect, deadline - started))
        try:
            body = request.body
            if body is None:
                conn.transport.write(request.head(None))
            else:
                await _write_body(conn, request.head(body.framing_header), body, timeouts.read)
            await _read_head(conn, timeouts.read, deadline, expires)
            response = AsyncUpstreamResponse(
                self.pool, conn, request.method == "HEAD", timeouts.read, expires
            )
            if response._small:
                await response._read_small(deadline)
        except BaseException:
            conn.close()
            raise
        return response


async def _write_body(
    conn: AsyncConnection, head: bytes, body: AsyncRequestBody, read_timeout: float
) -> None:
    """Send the head with the body's first piece, then the rest as the upstream takes it."""
    first = True
    async with aclosing(body.framed_chunks()) as pieces:
        async for piece in pieces:
            if conn.closed:
                raise send_failure(_lost(conn), timed_out=False, reused=conn.reused)
            conn.transport.write(head + piece if first else piece)
            first = False
            if conn.writing_paused:
                await _drain(conn, read_timeout)
    if first:
        conn.transport.write(head)


async def _drain(conn: AsyncConnection, read_timeout: float) -> None:
    """Wait until the upstream took enough of the request to write more, for ``read_timeout``."""
    until = time.monotonic() + read_timeout
    while conn.writing_paused and not conn.closed:
        remaining = until - time.monotonic()
        if remaining <= 0 or not await conn.wait(remaining):
            raise send_failure(TimeoutError(), timed_out=True, reused=conn.reused)


async def _read_head(
    conn: AsyncConnection, read_timeout: float, deadline: float, expires: float | None
) -> None:
    while True:
        if conn.failure is not None:
            raise _not_http(conn, in_body=False)
        if conn.head_done:
            return
        if conn.closed:
            raise head_failure(conn.error, received=conn.received, reused=conn.reused)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not await conn.wait(min(read_timeout, remaining)):
            raise too_late("answer", response_limit=deadline == expires)
