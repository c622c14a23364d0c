"""The floor of a Python async data plane: a bare ASGI reverse proxy, no Django (DESIGN §7).

    BENCH_UPSTREAM_URL=http://127.0.0.1:8080 uvicorn benchmarks.bare_asgi_proxy:app \\
        --loop uvloop --http httptools --no-access-log

It forwards ``GET <path>`` to the upstream over its own keep-alive pool (an asyncio Protocol per
connection, llhttp via ``httptools`` parsing the response, Content-Length bodies only) and returns
the status, ``Content-Type`` and body. Nothing else: no routing, no header policy, no timeouts,
no streaming. It is a yardstick for what the gateway's ASGI shell could reach on this machine,
not a proxy anyone should run.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import httptools

_UPSTREAM = urlsplit(os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:8080"))
HOST, PORT = _UPSTREAM.hostname or "127.0.0.1", _UPSTREAM.port or 80
HOST_HEADER = f"{HOST}:{PORT}".encode()


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; :meth:`exchange` sends a request head and awaits the response."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.content_type = b"application/octet-stream"
        self.body: list[bytes] = []
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._finish(exc or ConnectionResetError("the upstream closed the connection"))

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        self._finish(None)

    def _finish(self, exc: Exception | None) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)

    async def exchange(self, head: bytes) -> tuple[int, bytes, bytes]:
        assert self.transport is not None
        self.content_type, self.body = b"application/octet-stream", []
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(head)
        await self.waiter
        return self.parser.get_status_code(), self.content_type, b"".join(self.body)


_idle: deque[UpstreamConnection] = deque()  # one event loop per process: no lock needed


async def forward(head: bytes) -> tuple[int, bytes, bytes]:
    """Send ``head`` on an idle connection (or a new one); a reused one that fails is retried once
    on a fresh connection, since the upstream may have closed it while it sat idle."""
    while True:
        reused = bool(_idle)
        if reused:
            conn = _idle.pop()
        else:
            _, conn = await asyncio.get_running_loop().create_connection(
                UpstreamConnection, HOST, PORT
            )
        try:
            result = await conn.exchange(head)
        except (OSError, httptools.HttpParserError):
            if conn.transport is not None:
                conn.transport.close()
            if reused:
                continue
            raise
        if conn.reusable:
            _idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()
        return result


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http" or scope["method"] != "GET":
        await _answer(send, 405, b"text/plain", b"GET only\n")
        return
    target = scope["raw_path"]
    if scope["query_string"]:
        target += b"?" + scope["query_string"]
    head = b"GET " + target + b" HTTP/1.1\r\nHost: " + HOST_HEADER + b"\r\n\r\n"
    try:
        status, content_type, body = await forward(head)
    except (OSError, httptools.HttpParserError):
        status, content_type, body = 502, b"text/plain", b"upstream failed\n"
    await _answer(send, status, content_type, body)


async def _answer(send: Any, status: int, content_type: bytes, body: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
