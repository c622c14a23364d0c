"""Per-process pool of keep-alive connections to upstream instances.

The client is the largest cost on the hot path (DESIGN §3), so connections are plain sockets kept
open between requests. A pooled connection is checked for readability before reuse: an idle
connection that is readable has been closed (or written to) by the upstream and is discarded, which
catches the common keep-alive race without a failed request.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..netpolicy import AddressInfo, ForbiddenAddress, allowed_addresses
from ..sockets import is_stale, set_kernel_timeouts
from .failures import connect_failure


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect: the pool key. ``origin`` and ``host_header`` are worked out once."""

    scheme: str
    host: str
    port: int
    tls_verify: bool = True
    origin: str = field(init=False, compare=False, repr=False)
    host_header: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        host_header = host if self.port == default else f"{host}:{self.port}"
        object.__setattr__(self, "host_header", host_header)
        object.__setattr__(self, "origin", f"{self.scheme}://{host_header}")


@lru_cache(maxsize=4096)
def endpoint_for(scheme: str, host: str, port: int, tls_verify: bool) -> Endpoint:
    return Endpoint(scheme, host, port, tls_verify)


# Raised by a blocking socket whose kernel timeout (SO_RCVTIMEO/SO_SNDTIMEO) ran out.
KERNEL_TIMEOUTS = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError, TimeoutError)


@dataclass(slots=True, eq=False)
class Connection:
    """A keep-alive socket in blocking mode with kernel-enforced timeouts (see
    :mod:`django_gateway.sockets` for why), reset only when the wanted timeout changes."""

    endpoint: Endpoint
    sock: socket.socket
    reused: bool = False
    idle_since: float = field(default_factory=time.monotonic)
    timeout: float = 0.0
    reader: Any = None  # the transport's response parser, kept for the connection's lifetime

    def set_timeout(self, seconds: float) -> None:
        if seconds == self.timeout:
            return
        set_kernel_timeouts(self.sock, seconds)
        self.timeout = seconds


_tls_contexts: dict[bool, ssl.SSLContext] = {}


def tls_context(verify: bool) -> ssl.SSLContext:
    """One context per verification mode, shared by every upstream connection (both shells)."""
    context = _tls_contexts.get(verify)
    if context is None:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _tls_contexts[verify] = context
    return context


def _resolve(endpoint: Endpoint) -> list[AddressInfo]:
    try:
        return allowed_addresses(endpoint.host, endpoint.port)
    except (socket.gaierror, ForbiddenAddress) as exc:
        raise connect_failure(exc) from exc


def open_connection(endpoint: Endpoint, timeout: float) -> Connection:
    """Connect (and handshake TLS) within ``timeout``, mapping failures to gateway errors."""
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    for family, kind, proto, _, address in _resolve(endpoint):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.scheme == "https":
                sock = tls_context(endpoint.tls_verify).wrap_socket(
                    sock, server_hostname=endpoint.host
                )
            sock.settimeout(None)  # blocking from now on; Connection.set_timeout bounds it
            return Connection(endpoint, sock)
        except (TimeoutError, ssl.SSLError) as exc:  # another address would not do better
            sock.close()
            raise connect_failure(exc) from exc
        except OSError as exc:  # refused, unreachable: the next address may answer
            sock.close()
            last_error = exc
    raise connect_failure(last_error or OSError("no address to connect to"))


class ConnectionPool:
    """Idle connections per endpoint, LIFO so the warmest connection is reused first."""

    clock = staticmethod(time.monotonic)

    def __init__(self, max_idle_per_endpoint: int = 32, idle_timeout: float = 30.0) -> None:
        self.max_idle_per_endpoint = max_idle_per_endpoint
        self.idle_timeout = idle_timeout
        self._idle: dict[Endpoint, deque[Connection]] = {}
        self._lock = threading.Lock()

    def acquire(
        self, endpoint: Endpoint, connect_timeout: float, *, check: bool = True
    ) -> Connection:
        """A pooled connection, else a new one.

        ``check=False`` skips the readability probe (a system call) for requests that are retried
        on a fresh connection anyway if the pooled one turns out dead.
        """
        now = self.clock()
        while True:
            with self._lock:
                idle = self._idle.get(endpoint)
                conn = idle.pop() if idle else None
            if conn is None:
                return open_connection(endpoint, connect_timeout)
            if now - conn.idle_since > self.idle_timeout or (check and is_stale(conn.sock)):
                conn.sock.close()
                continue
            conn.reused = True
            return conn

    def release(self, conn: Connection) -> None:
        conn.idle_since = self.clock()
        with self._lock:
            idle = self._idle.setdefault(conn.endpoint, deque())
            if len(idle) < self.max_idle_per_endpoint:
                idle.append(conn)
                return
        conn.sock.close()

    def clear(self) -> None:
        with self._lock:
            pools, self._idle = self._idle, {}
        for idle in pools.values():
            for conn in idle:
                conn.sock.close()

    def idle_count(self, endpoint: Endpoint | None = None) -> int:
        with self._lock:
            if endpoint is not None:
                return len(self._idle.get(endpoint, ()))
            return sum(len(idle) for idle in self._idle.values())
