"""Serving one matched HTTP request on the event loop, from the access stages to the last byte.

The decisions are the core's (admission, stages, plan, retries, header policy, problem bodies,
access log); this module only moves bytes between ASGI and the async transport:

- a body that came with the head (up to 64 KiB) goes out in one ``send``, its try finished first;
- a streamed body goes out chunk by chunk; ``send`` waits while the client is slow (the server's
  flow control), and the transport stops reading the upstream meanwhile, so nothing buffers
  without bound. A failure mid-stream is raised to the server, which closes the connection: the
  client sees a short body, never a clean end (as under WSGI);
- a client that disconnects while the gateway waits (a slow head, a quiet stream) cancels the
  exchange: :class:`ClientWatch` notices ``http.disconnect`` and the upstream connection is closed,
  not pooled. The access log says 499 for it, as nginx does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..conf import gateway_settings
from ..exceptions import GatewayError, ProblemResponse, problem_response
from ..exchange import Exchange
from ..pipeline import error_response, log_access, log_refusal, request_id_for, unexpected
from ..proxy.forwarder import upstream_response_headers
from ..proxy.headers import bodiless
from .forward import Forwarded, Receive, aforward
from .stages import run_checks

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]

#: How long a request may wait before the gateway starts watching for the client going away;
#: quick answers (nearly all) never pay for the watch.
WATCH_AFTER = 0.05
#: The status the access log gives a request whose client left first (nginx's choice).
CLIENT_CLOSED = 499


class ClientWatch:
    """Cancels the serving task when the client disconnects.

    ASGI says so only through ``receive()``, which also delivers the request body, so the watch
    starts once nothing else reads it: no body, or a body read to its end (``body``).
    """

    __slots__ = ("_handle", "_receive", "_task", "_watcher", "body", "gone")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task = asyncio.current_task()
        self._watcher: asyncio.Task[None] | None = None
        self.body: Any = None  # the request's AsyncRequestBody, once the forwarder made one
        self.gone = False
        self._handle = asyncio.get_running_loop().call_later(WATCH_AFTER, self._start)

    def _start(self) -> None:
        body = self.body
        if body is not None and not body.finished:
            self._handle = asyncio.get_running_loop().call_later(WATCH_AFTER, self._start)
            return
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        try:
            while (await self._receive())["type"] != "http.disconnect":
                pass
        except asyncio.CancelledError:
            # stop(): the response is done. Returning (rather than ending in CancelledError,
            # whose traceback would point back at this task) leaves no reference cycle for
            # the garbage collector, whose full collections stop the loop.
            return
        self.gone = True
        if self._task is not None:
            self._task.cancel()

    def stop(self) -> None:
        self._handle.cancel()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
        self._task = None


async def serve_http(exchange: Exchange, receive: Receive, send: Send) -> None:
    watch = ClientWatch(receive)
    try:
        try:
            await run_checks(exchange)
            forwarded = await aforward(exchange, receive, watch)
        except GatewayError as error:
            await send_response(send, error_response(exchange, error), exchange)
            return
        except Exception as exc:  # a bug: still answer in the gateway's format
            response = error_response(exchange, unexpected(exchange))
            response.exception = exc
            await send_response(send, response, exchange)
            return
        await _respond(exchange, forwarded, send)
    except asyncio.CancelledError:
        if not watch.gone:
            raise
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        log_access(exchange, CLIENT_CLOSED)
    finally:
        watch.stop()


async def _respond(exchange: Exchange, forwarded: Forwarded, send: Send) -> None:
    upstream, tries, choice = forwarded.upstream, forwarded.tries, forwarded.choice
    try:
        headers = _encoded(
            upstream_response_headers(exchange, forwarded.plan, choice, upstream), exchange
        )
        if upstream.complete:
            body = upstream.buffered_body()
            if (
                exchange.method != "HEAD"
                and not bodiless(upstream.status)
                and not _has_length(headers)
            ):
                headers.append((b"content-length", str(len(body)).encode()))
            tries.finished(choice)
            log_access(exchange, upstream.status)
            await send(
                {"type": "http.response.start", "status": upstream.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body})
            return
        log_access(exchange, upstream.status)
        await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
        async for chunk in upstream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        upstream.close()
        tries.finished(choice)


def _has_length(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"content-length" for name, _ in headers)


def _encoded(
    headers: list[tuple[str, str]], exchange: Exchange | None
) -> list[tuple[bytes, bytes]]:
    """The head for ASGI; the gateway's own headers (``RateLimit-*``) replace an upstream's."""
    own = exchange.response_headers if exchange is not None else ()
    if own:
        names = {name.lower() for name, _ in own}
        headers = [h for h in headers if h[0].lower() not in names] + list(own)
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def send_response(send: Send, response: ProblemResponse, exchange: Exchange | None) -> None:
    """A response the gateway made itself (problem+json) over ASGI; logged like the WSGI one."""
    headers = _encoded(list(response.items()), exchange)
    if exchange is not None:
        log_access(exchange, response.status_code)
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})


async def refuse(send: Send, environ: dict[str, Any], error: GatewayError) -> None:
    """A request refused before any route took it (bad path, Host, no configuration)."""
    request_id = request_id_for(environ)
    log_refusal(environ, error.status, request_id)
    response = problem_response(
        error, request_id=request_id, request_id_header=gateway_settings.REQUEST_ID_HEADER
    )
    await send_response(send, response, None)
