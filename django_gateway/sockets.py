"""Socket tuning shared by the proxy's connection pool and the rate limiter's Redis connections.

Python's own socket timeouts put the socket in non-blocking mode and ``poll()`` before every send
and receive, and ``settimeout`` is an ``ioctl`` each time: extra system calls on every request,
which measured as the largest avoidable cost of both the proxy and the limiter's round trip. A
blocking socket with the kernel's ``SO_RCVTIMEO``/``SO_SNDTIMEO`` gets the same bound for free; a
receive that times out then raises ``BlockingIOError`` (``EAGAIN``) instead of ``TimeoutError``.
"""

from __future__ import annotations

import select
import socket
import struct


def set_kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """Bound sends and receives on ``sock`` by ``seconds`` in the kernel.

    Call ``sock.settimeout(None)`` once first: only a blocking socket leaves timing to the kernel.
    """
    seconds = max(seconds, 0.001)
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def is_stale(sock: socket.socket) -> bool:
    """Whether an idle connection is unusable: closed by the peer, or holding unread bytes."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
