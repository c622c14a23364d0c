"""The demo's upstream services: echo servers running in the demo's own process.

They are :class:`django_gateway.testing.upstreams.EchoUpstream` (the loopback servers the test
suite uses) that also say which of them answered, bound to fixed ports when those are free so the
targets in the admin stay recognisable from one run to the next.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from dataclasses import replace

from django_gateway.testing.upstreams import EchoUpstream, RecordedRequest, Reply, echo_reply


class DemoUpstream(EchoUpstream):
    """An echo server on ``port`` (or on a free port when ``port`` is taken or 0).

    Every answer is the JSON echo of what the gateway sent, plus an ``X-Demo-Upstream`` header
    naming this server, so round-robin balancing is visible from curl.
    """

    def __init__(self, name: str, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(self._answer, host)
        self.name = name
        self.wanted_port = port

    def _answer(self, request: RecordedRequest) -> Reply:
        reply = echo_reply(request)
        return replace(reply, headers=[*reply.headers, ("X-Demo-Upstream", self.name)])

    def start(self) -> DemoUpstream:
        if not self.wanted_port:
            return super().start()
        # EchoUpstream always binds an ephemeral port, so bind the wanted one here and hand the
        # listener to the same accept loop start() would run.
        if self._listener is not None:
            raise RuntimeError(f"{self.name} is already running")
        family = socket.getaddrinfo(self.host, 0, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        if os.name == "posix":  # rebind at once after a restart (TIME_WAIT), never share a port
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.wanted_port))
            listener.listen(128)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return super().start()  # the port is taken: fall back to a free one
            raise
        self._port = self.wanted_port
        self._listener, self._wakeup = listener, socket.socketpair()
        self._stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{self.name}-accept", daemon=True
        )
        self._accept_thread.start()
        return self

    @property
    def fell_back(self) -> bool:
        """Whether the wanted port was taken and a free one was used instead."""
        return bool(self.wanted_port) and self.port != self.wanted_port
