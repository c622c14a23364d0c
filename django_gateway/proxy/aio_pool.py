"""Per-process keep-alive connections to upstream instances, on the asyncio event loop.

The ASGI shell's counterpart of :mod:`.pool`. A connection is an :class:`asyncio.Protocol` rather
than a stream pair: the loop hands it each read, and llhttp (``httptools``, one parser for the
connection's lifetime) parses it on the spot, so a response that arrives in one read costs one
wake-up of the waiting task and no stream buffering. The protocol only collects what arrived and
says so; what it means (deadlines, failures, the response handed on) is :mod:`.aio_transport`'s.

Flow control both ways: reading from the upstream pauses while more than :data:`HIGH_WATER`
bytes of body wait to be consumed, and the transport's ``pause_writing`` holds the request body
back (:attr:`AsyncConnection.writing_paused`), so a slow client never makes the gateway buffer a
whole download or upload.

Connections belong to the event loop that opened them: the pool keeps its idle connections per
loop, and one loop never gets another's. An idle connection the upstream closes or writes to is
marked dead by its protocol as the loop notices, and skipped when the pool hands connections out;
requests that cannot be resent (``check``) also probe the socket first, as the WSGI pool does.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import deque
from functools import partial
from typing import cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from ..netpolicy import AddressInfo, ForbiddenAddress, screen_addresses
from ..sockets import is_stale
from .failures import connect_failure
from .pool import Endpoint, tls_context
from .transport import ResponseCallbacks

#: Body bytes a connection holds for its reader before it stops reading from the upstream.
HIGH_WATER = 256 * 1024
#: How early a timer may fire and still count (uvloop's clock ticks in milliseconds).
TIMER_SLACK = 0.001


class _AfterResponse(Exception):
    """Bytes followed a complete response: the upstream is not speaking one response at a time."""


class AsyncConnection(ResponseCallbacks, asyncio.Protocol):
    """One upstream connection and the response arriving on it, as httptools reports it.

    :meth:`wait` lets the transport sleep until something happens (bytes, the end of the
    connection, room to write). ``closed`` with ``error`` ``None`` is an orderly close (EOF);
    ``failure`` is the parser's verdict on bytes that are not HTTP/1.1.
    """

    __slots__ = (
        "_timer",
        "_until",
        "_waiter",
        "buffered",
        "closed",
        "endpoint",
        "error",
        "failure",
        "idle",
        "idle_since",
        "loop",
        "reading_paused",
        "received",
        "reused",
        "sock",
        "transport",
        "writing_paused",
    )

    transport: asyncio.Transport
    sock: socket.socket

    def __init__(self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop) -> None:
        self.endpoint = endpoint
        self.loop = loop
        self.parser = HttpResponseParser(self)
        self.reused = False
        self.idle = False
        self.idle_since = 0.0
        self.closed = False
        self.error: OSError | None = None
        self.reading_paused = False
        self.writing_paused = False
        self._waiter: asyncio.Future[bool] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._until = 0.0
        self.reset()

    def reset(self) -> None:
        """Ready the connection for its next response."""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.reason = b""
        self.status = 0
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.received = False
        self.failure: HttpParserError | HttpParserUpgrade | None = None

    def wait(self, timeout: float) -> asyncio.Future[bool]:
        """A future that comes true when the protocol reports something (bytes, the end of the
        connection, room to write), or false once ``timeout`` has passed.

        One timer serves all the connection's waits: a wait replaces it only with a nearer
        deadline, and a timer that fires before the current deadline sets itself again. A
        timer per wait cost more than the rest of a pooled request's bookkeeping together.
        """
        loop = self.loop
        until = self._until = loop.time() + timeout
        timer = self._timer
        if timer is None or timer.when() > until:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(until, self._on_timer)
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        return waiter

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody is waiting: the next wait sets a timer
        if self.loop.time() + TIMER_SLACK >= self._until:
            waiter.set_result(False)
        else:
            self._timer = self.loop.call_at(self._until, self._on_timer)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def take_chunks(self) -> list[bytes]:
        """The body received so far, handed over; reading resumes if it had paused."""
        chunks, self.chunks = self.chunks, []
        self.buffered = 0
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()
        return chunks

    def stale(self) -> bool:
        """Whether the idle socket has something the loop has not read yet (bytes, or EOF)."""
        return is_stale(self.sock)

    def close(self) -> None:
        """Drop the connection at once, discarding anything not yet written or read."""
        self.closed = True
        self.transport.abort()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.sock = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        if self.idle:  # nothing was asked: the connection can no longer be trusted
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:  # a switch nobody asked for (no HttpParserError)
            self.failure = exc
            self.close()
        except HttpParserError as exc:
            if self.complete:  # bytes after the response: it stands, the connection does not
                self.keep_alive = False
            else:
                self.failure = exc
            self.close()
        if self.buffered > HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def eof_received(self) -> None:
        self.closed = True
        self._wake()  # returning None lets the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.error is None and exc is not None:
            self.error = exc if isinstance(exc, OSError) else OSError(str(exc))
        # The parser holds this protocol (its callbacks) and this protocol holds the parser: a
        # cycle only the garbage collector would free, and a full collection stops the loop
        # for as long as it takes. Nothing is parsed after the connection is lost.
        del self.parser
        self._wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    # -- httptools callbacks (the rest are ResponseCallbacks', shared with the sync transport) --

    def on_message_begin(self) -> None:
        if self.complete:
            raise _AfterResponse
        self.headers = []

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)


async def _resolve(loop: asyncio.AbstractEventLoop, endpoint: Endpoint) -> list[AddressInfo]:
    infos = await loop.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    return screen_addresses(endpoint.host, infos)


async def _tcp(loop: asyncio.AbstractEventLoop, address: AddressInfo) -> socket.socket:
    family, kind, proto, _, sockaddr = address
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, sockaddr)
    except OSError as exc:
        sock.close()
        if exc.errno:  # asyncio says "Connect call failed": give the client the system's words
            raise OSError(exc.errno, os.strerror(exc.errno)) from exc
        raise
    except BaseException:
        sock.close()
        raise
    return sock


async def dial(endpoint: Endpoint, timeout: float) -> socket.socket:
    """A TCP connection to ``endpoint``: its addresses resolved off the loop, screened by the
    upstream address policy and tried in order within ``timeout``; failures mapped to gateway
    errors as in :mod:`.pool` (502, 504 for the timeout). The HTTP pool and the WebSocket
    passthrough both connect through here."""
    loop = asyncio.get_running_loop()
    last_error: OSError | None = None
    try:
        async with asyncio.timeout(timeout):
            for address in await _resolve(loop, endpoint):
                try:
                    return await _tcp(loop, address)
                except TimeoutError:
                    raise
                except OSError as exc:  # refused, unreachable: the next address may answer
                    last_error = exc
    except (TimeoutError, socket.gaierror, ForbiddenAddress) as exc:
        raise connect_failure(exc) from exc
    raise connect_failure(last_error or OSError("no address to connect to"))


async def open_connection(endpoint: Endpoint, timeout: float) -> AsyncConnection:
    """A pooled-to-be connection: :func:`dial`, then TLS for ``https``, all within ``timeout``."""
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout
    sock = await dial(endpoint, timeout)
    tls = tls_context(endpoint.tls_verify) if endpoint.scheme == "https" else None
    try:
        async with asyncio.timeout_at(until):
            # From here the transport owns the socket, and closes it if the handshake fails.
            _, conn = await loop.create_connection(
                partial(AsyncConnection, endpoint, loop),
                sock=sock,
                ssl=tls,
                server_hostname=endpoint.host if tls is not None else None,
            )
    except (TimeoutError, OSError) as exc:  # ssl.SSLError is an OSError
        sock.close()
        raise connect_failure(exc) from exc
    except BaseException:
        sock.close()
        raise
    return conn


_Idle = dict[Endpoint, deque[AsyncConnection]]


class AsyncConnectionPool:
    """Idle connections per event loop and endpoint, LIFO so the warmest is reused first.

    Everything runs on the loop's own thread, so nothing is locked. Loops that have closed are
    forgotten when a new loop first uses the pool (their sockets close as they are collected).
    """

    clock = staticmethod(time.monotonic)

    def __init__(self, max_idle_per_endpoint: int = 32, idle_timeout: float = 30.0) -> None:
        self.max_idle_per_endpoint = max_idle_per_endpoint
        self.idle_timeout = idle_timeout
        self._loops: dict[asyncio.AbstractEventLoop, _Idle] = {}

    def _idle(self, loop: asyncio.AbstractEventLoop) -> _Idle:
        idle = self._loops.get(loop)
        if idle is None:
            for old in [old for old in self._loops if old.is_closed()]:
                del self._loops[old]
            idle = self._loops[loop] = {}
        return idle

    def take(self, endpoint: Endpoint, *, check: bool = True) -> AsyncConnection | None:
        """A live idle connection to ``endpoint`` opened on the running loop, or ``None``.

        ``check=False`` skips the socket probe (a system call) for requests that are resent on a
        fresh connection anyway if the pooled one turns out dead.
        """
        idle = self._idle(asyncio.get_running_loop()).get(endpoint)
        if not idle:
            return None
        now = self.clock()
        while idle:
            conn = idle.pop()
            if conn.closed or now - conn.idle_since > self.idle_timeout or (check and conn.stale()):
                conn.close()
                continue
            conn.idle = False
            conn.reused = True
            return conn
        return None

    def release(self, conn: AsyncConnection) -> None:
        """Keep ``conn``, its response read to the end, for the next request (or close it)."""
        if conn.closed:
            return
        endpoints = self._idle(conn.loop)
        idle = endpoints.get(conn.endpoint)
        if idle is None:
            idle = endpoints[conn.endpoint] = deque()
        elif len(idle) >= self.max_idle_per_endpoint:
            for dead in [c for c in idle if c.closed]:
                idle.remove(dead)
            if len(idle) >= self.max_idle_per_endpoint:
                conn.close()
                return
        conn.reset()
        conn.idle = True
        conn.idle_since = self.clock()
        idle.append(conn)

    def clear(self) -> None:
        """Close every idle connection whose loop can still close it; forget them all."""
        loops, self._loops = self._loops, {}
        for loop, idle in loops.items():
            if loop.is_closed():
                continue
            for conns in idle.values():
                for conn in conns:
                    loop.call_soon_threadsafe(conn.close)

    def idle_count(self, endpoint: Endpoint | None = None) -> int:
        return sum(
            len(conns)
            for idle in self._loops.values()
            for key, conns in idle.items()
            if endpoint is None or key == endpoint
        )
