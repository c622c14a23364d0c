"""The socket layer under the stand-in upstreams: request capture and server lifecycle.

Everything is standard-library sockets and threads; requests are parsed by llhttp
(``httptools``), the parser the proxy itself uses, so a stand-in never disagrees with production
code about HTTP framing. Servers built on :class:`LoopbackServer` live in
:mod:`django_gateway.testing.upstreams`, which also re-exports these names; import from there.
"""

from __future__ import annotations

import contextlib
import hashlib
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

import httptools

__all__ = ["DEFAULT_KEEP_BODY_LIMIT", "LoopbackServer", "RecordedRequest", "RequestReader"]

#: How much of each request body is kept in :attr:`RecordedRequest.body`; the rest is only hashed.
DEFAULT_KEEP_BODY_LIMIT = 1 << 20
_RECV_SIZE = 256 * 1024


class HeaderLookup:
    """Case-insensitive lookups over a ``headers`` list of ``(name, value)`` pairs, shared by the
    recorded requests here and by test code that records responses the same way."""

    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in received order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]


@dataclass
class RecordedRequest(HeaderLookup):
    """One request exactly as an upstream received it, to assert on what the gateway sent.

    ``target``, ``headers`` and ``raw_head`` are kept verbatim (no decoding, no case folding):
    the point of these tests is to catch a proxy that re-encodes paths or merges headers.
    """

    method: str
    target: str
    http_version: str
    headers: list[tuple[str, str]]
    raw_head: bytes
    body: bytes = field(default=b"", repr=False)
    body_size: int = 0
    body_sha256: str = hashlib.sha256(b"").hexdigest()
    chunked: bool = False
    connection_id: int = 0
    #: Trailer fields of a chunked body, kept apart so they cannot be mistaken for headers.
    trailers: list[tuple[str, str]] = field(default_factory=list)
    path: str = field(init=False)
    query: str = field(init=False)

    def __post_init__(self) -> None:
        self.path, _, self.query = self.target.partition("?")


class _Message:
    """The request being parsed; turned into a :class:`RecordedRequest` by :meth:`record`."""

    def __init__(self) -> None:
        self.url = bytearray()
        self.headers: list[tuple[str, str]] = []
        self.trailers: list[tuple[str, str]] = []
        self.method = ""
        self.http_version = ""
        self.raw_head = b""
        self.body = bytearray()
        self.body_size = 0
        self.hasher = hashlib.sha256()
        self.chunked = False
        self.keep_alive = True
        #: Body bytes still due in the current frame (Content-Length body or chunk); 0 if unknown.
        self.data_remaining = 0

    def record(self, connection_id: int) -> RecordedRequest:
        return RecordedRequest(
            method=self.method,
            target=self.url.decode("latin-1"),
            http_version=self.http_version,
            headers=list(self.headers),
            raw_head=self.raw_head,
            body=bytes(self.body),
            body_size=self.body_size,
            body_sha256=self.hasher.hexdigest(),
            chunked=self.chunked,
            connection_id=connection_id,
            trailers=list(self.trailers),
        )


class _Callbacks:
    """httptools protocol object: collects one message at a time into :class:`_Message`."""

    def __init__(self, keep_body_limit: int) -> None:
        self.keep_body_limit = keep_body_limit
        self.parser = httptools.HttpRequestParser(self)
        self.segment: bytes | memoryview = b""  # what is being fed right now
        self.line_prefix = b""  # bytes fed since the last LF, before the current segment
        self.head = bytearray()  # head bytes fed before the current segment
        self.message: _Message | None = None
        self.in_head = False
        self.head_done = False  # set when headers complete, cleared by the reader
        self.completed: deque[_Message] = deque()

    def on_message_begin(self) -> None:
        self.message, self.head, self.in_head = _Message(), bytearray(), True

    def on_url(self, url: bytes) -> None:
        assert self.message is not None
        self.message.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.message is not None
        fields = self.message.headers if self.in_head else self.message.trailers
        fields.append((name.decode("latin-1"), value.decode("latin-1").rstrip(" \t")))

    def on_headers_complete(self) -> None:
        message = self.message
        assert message is not None
        message.raw_head = bytes(self.head) + bytes(self.segment)
        message.method = self.parser.get_method().decode("ascii")
        message.http_version = self.parser.get_http_version()
        self.in_head, self.head_done = False, True
        names = {name.lower(): value for name, value in message.headers}
        if "transfer-encoding" not in names and names.get("content-length", "").isdigit():
            message.data_remaining = int(names["content-length"])

    def on_chunk_header(self) -> None:
        assert self.message is not None
        self.message.chunked = True
        # Fed line by line, the chunk-size line llhttp just accepted is prefix + segment.
        size_line = (self.line_prefix + bytes(self.segment)).split(b";", 1)[0]
        try:
            self.message.data_remaining = int(size_line.strip(), 16)
        except ValueError:
            self.message.data_remaining = 0  # fall back to line-by-line feeding

    def on_body(self, data: bytes) -> None:
        message = self.message
        assert message is not None
        message.hasher.update(data)
        room = self.keep_body_limit - len(message.body)
        if room > 0:
            message.body += data[:room]
        message.body_size += len(data)
        message.data_remaining = max(0, message.data_remaining - len(data))

    def on_message_complete(self) -> None:
        assert self.message is not None
        self.message.keep_alive = self.parser.should_keep_alive()
        self.completed.append(self.message)
        self.message, self.in_head = None, False


class RequestReader:
    """Reads requests off one connection, streaming bodies (hashed, not held) through llhttp.

    Bytes are fed so that every message boundary falls on a feed boundary: the head and chunked
    framing are fed a line at a time (each of their elements ends in LF), body data in bulk up to
    the end of its Content-Length or chunk. That is what makes ``raw_head`` byte-exact and keeps a
    pipelined request's bytes out of the previous one. llhttp remains the only judge of framing:
    the lengths read here are ones it has already accepted, and they only decide where to cut.
    """

    def __init__(
        self,
        sock: socket.socket,
        connection_id: int,
        *,
        keep_body_limit: int = DEFAULT_KEEP_BODY_LIMIT,
        on_bytes: Callable[[bytes], None] | None = None,
    ) -> None:
        self.sock = sock
        self.connection_id = connection_id
        self._on_bytes = on_bytes
        self._callbacks = _Callbacks(keep_body_limit)
        self._buffer = b""
        self._pos = 0
        #: Whether the last request returned allows the connection to be reused.
        self.keep_alive = True
        #: Set once the client asked for an upgrade/CONNECT; the reader then stops reading.
        self.upgraded = False

    def read_request(
        self,
        *,
        head_only: bool = False,
        on_head: Callable[[RecordedRequest], None] | None = None,
    ) -> RecordedRequest | None:
        """Return the next request, or ``None`` at end of stream.

        ``head_only`` returns as soon as the head is in (body empty); ``on_head`` is called with
        the same partial record before the body is read (e.g. to answer ``Expect: 100-continue``).
        Raises :class:`httptools.HttpParserError` on a malformed request.
        """
        callbacks = self._callbacks
        while True:
            if callbacks.completed:
                message = callbacks.completed.popleft()
                callbacks.head_done = False  # feeding stops at message ends, so it was this one's
                self.keep_alive = message.keep_alive and not self.upgraded
                return message.record(self.connection_id)
            if callbacks.head_done:
                callbacks.head_done = False
                assert callbacks.message is not None
                partial = callbacks.message.record(self.connection_id)
                if head_only:
                    return partial
                if on_head is not None:
                    on_head(partial)
                continue
            if self.upgraded or not self._fill():
                return None
            self._feed_segment()

    def _fill(self) -> bool:
        if self._pos < len(self._buffer):
            return True
        try:
            data = self.sock.recv(_RECV_SIZE)
        except OSError:
            return False
        if self._on_bytes is not None:
            self._on_bytes(data)
        self._buffer, self._pos = data, 0
        return bool(data)

    def _feed_segment(self) -> None:
        callbacks = self._callbacks
        message = callbacks.message
        end = len(self._buffer)
        bulk = False
        if message is not None and not callbacks.in_head and message.data_remaining > 0:
            bulk, cut = True, min(end, self._pos + message.data_remaining)
        else:
            newline = self._buffer.find(b"\n", self._pos)
            cut = end if newline < 0 else newline + 1
        segment = memoryview(self._buffer)[self._pos : cut]
        self._pos = cut
        callbacks.segment = segment
        try:
            callbacks.parser.feed_data(segment)
        except httptools.HttpParserUpgrade:
            self.upgraded = True  # the stand-ins do not speak other protocols
        if callbacks.in_head:
            callbacks.head += segment
        ends_line = bulk or segment[-1:].tobytes() == b"\n"
        callbacks.line_prefix = b"" if ends_line else callbacks.line_prefix + bytes(segment)


class LoopbackServer:
    """Lifecycle shared by every stand-in upstream: bind, accept, record, stop promptly.

    Each connection gets a daemon thread running :meth:`_serve`. :meth:`stop` shuts down the
    listener and every live socket (which wakes any blocked ``recv``/``send``) and interrupts
    :meth:`_sleep`, so a test never waits on a stalled upstream. Use as a context manager or call
    :meth:`start`/:meth:`stop`.
    """

    #: Upper bound on how long :meth:`stop` waits for connection threads.
    join_timeout = 2.0

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        keep_body_limit: int = DEFAULT_KEEP_BODY_LIMIT,
        port: int = 0,
    ) -> None:
        self.host = host
        self.keep_body_limit = keep_body_limit
        #: The port to bind; 0 (the default) takes a free one.
        self.wanted_port = port
        #: Unexpected exceptions raised while serving, so tests can assert there were none.
        self.errors: list[BaseException] = []
        self._port: int | None = None
        self._changed = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._connections_accepted = 0
        self._bytes_received = 0
        self._next_id = 0
        self._live: dict[int, socket.socket] = {}
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._accept_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind ``port`` (a free one if 0) and start accepting; returns ``self``."""
        if self._listener is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        family = socket.getaddrinfo(self.host, 0, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        if self.wanted_port:  # rebind at once after a restart (TIME_WAIT); never shares a port
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.wanted_port))
            listener.listen(128)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._port = int(listener.getsockname()[1])
        self._listener, self._wakeup = listener, socket.socketpair()
        self._stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{type(self).__name__}-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and all live connections, and join threads (bounded)."""
        if self._listener is None or self._wakeup is None:
            return
        deadline = time.monotonic() + self.join_timeout
        self._stopping.set()
        self._wakeup[1].send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(self.join_timeout)
        for sock in (self._listener, *self._wakeup):
            sock.close()
        with self._changed:
            for sock in self._live.values():
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._listener = self._wakeup = self._accept_thread = None

    def __enter__(self) -> Self:
        return self if self._listener is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL such as ``http://127.0.0.1:PORT`` (IPv6 hosts are bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- what arrived ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._changed:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._changed:
            return len(self._requests)

    @property
    def connections_accepted(self) -> int:
        with self._changed:
            return self._connections_accepted

    @property
    def bytes_received(self) -> int:
        """Raw bytes read from all connections, including any that never formed a request."""
        with self._changed:
            return self._bytes_received

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``n`` requests arrived; raises :class:`TimeoutError` otherwise."""
        self._wait(lambda: len(self._requests) >= n, timeout, f"{n} request(s)")
        return self.requests

    def wait_for_connections(self, n: int, timeout: float = 5.0) -> None:
        """Block until at least ``n`` connections were accepted (useful for silent upstreams)."""
        self._wait(lambda: self._connections_accepted >= n, timeout, f"{n} connection(s)")

    def clear(self) -> None:
        """Forget recorded requests, counters and errors (between phases of one test)."""
        with self._changed:
            self._requests.clear()
            self._connections_accepted = self._bytes_received = 0
            self.errors.clear()

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise TimeoutError(f"{type(self).__name__} did not receive {what} in {timeout}s")

    # -- for subclasses ----------------------------------------------------------------------

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        """Handle one accepted connection; the socket is closed when this returns."""
        raise NotImplementedError

    def _reader(self, sock: socket.socket, connection_id: int) -> RequestReader:
        return RequestReader(
            sock, connection_id, keep_body_limit=self.keep_body_limit, on_bytes=self._count_bytes
        )

    def _record(self, request: RecordedRequest) -> None:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless :meth:`stop` is called; returns ``False`` if it was."""
        return not self._stopping.wait(seconds) if seconds > 0 else not self._stopping.is_set()

    # -- internals ---------------------------------------------------------------------------

    def _count_bytes(self, data: bytes) -> None:
        with self._changed:
            self._bytes_received += len(data)

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wakeup is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wakeup[0], selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is not self._listener:
                        return
                    try:
                        sock, _ = self._listener.accept()
                    except OSError:
                        continue
                    self._spawn(sock)

    def _spawn(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        # Head and body go out in separate writes; without this, Nagle holds the body back until
        # the client's delayed ACK (~40 ms), which is not how a real upstream behaves.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._changed:
            if self._stopping.is_set():
                sock.close()
                return
            self._next_id += 1
            self._connections_accepted += 1
            self._live[self._next_id] = sock
            thread = threading.Thread(
                target=self._run_connection,
                args=(sock, self._next_id),
                name=f"{type(self).__name__}-conn-{self._next_id}",
                daemon=True,
            )
            self._threads.add(thread)
            self._changed.notify_all()
        thread.start()

    def _run_connection(self, sock: socket.socket, connection_id: int) -> None:
        try:
            self._serve(sock, connection_id)
        except (OSError, httptools.HttpParserError):
            pass  # the client went away, stop() shut the socket, or the client spoke garbage
        except Exception as exc:
            self.errors.append(exc)
        finally:
            with self._changed:
                self._live.pop(connection_id, None)
                self._threads.discard(threading.current_thread())
            sock.close()
