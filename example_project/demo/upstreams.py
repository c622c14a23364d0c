"""The demo's upstream services: echo servers running in the demo's own process.

They are :class:`django_gateway.testing.upstreams.EchoUpstream` (the loopback servers the test
suite uses) that also say which of them answered, bound to fixed ports when those are free so the
targets in the admin stay recognisable from one run to the next.
"""

from __future__ import annotations

import errno
from dataclasses import replace

from django_gateway.testing.upstreams import EchoUpstream, RecordedRequest, Reply, echo_reply


class DemoUpstream(EchoUpstream):
    """An echo server on ``port`` (or on a free port when ``port`` is taken or 0).

    Every answer is the JSON echo of what the gateway sent, plus an ``X-Demo-Upstream`` header
    naming this server, so round-robin balancing is visible from curl.
    """

    def __init__(self, name: str, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(self._answer, host, port=port)
        self.name = name
        self.asked_port = port
        #: Whether the asked-for port was taken and a free one was used instead.
        self.fell_back = False

    def _answer(self, request: RecordedRequest) -> Reply:
        reply = echo_reply(request)
        return replace(reply, headers=[*reply.headers, ("X-Demo-Upstream", self.name)])

    def start(self) -> DemoUpstream:
        try:
            return super().start()
        except OSError as exc:
            if not self.wanted_port or exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            self.wanted_port = 0  # the port is taken: fall back to a free one
            self.fell_back = True
            return super().start()
