"""WebSocket passthrough on the event loop: a handshake is a request like any other, then frames.

The handshake goes through what every request goes through (admission, the route's stages, the
plan's header policy, :class:`~..proxy.forwarder.Tries` for the instance, the retry policy and
the service's in-flight cap), so a WebSocket cannot reach an upstream an HTTP request could not.
A refusal is the gateway's problem+json response, sent through the ASGI
``websocket.http.response`` extension when the server offers it; without it ASGI can only close
the handshake (code 1008, which servers turn into a bare 403). An upstream's answer other than
101 is a 502: WebSocket clients see any such answer as a failed handshake anyway, and the 502
says which side failed.

The upstream side is the ``websockets`` client on a socket this module connects itself, so the
address policy of :mod:`django_gateway.netpolicy` holds for it too. It never follows redirects
and never compresses (a LAN hop is not worth the CPU). Once both sides are open, frames are
relayed both ways, each direction awaiting the other side's send, so a slow reader slows its
writer instead of filling memory. How a connection ends, and what each side is told:

| what happened | client gets | upstream gets |
|---|---|---|
| the client closes | — | the same code and reason (no code: 1000) |
| the upstream closes | the same code and reason (no code: 1000) | — |
| the client's connection is lost | — | 1001 |
| the upstream's connection is lost (or its pings go unanswered) | 1014 (bad gateway) | — |
| a message over ``WEBSOCKET_MAX_MESSAGE_SIZE`` either way | 1009 | 1009 |
| no message either way for ``WEBSOCKET_IDLE_TIMEOUT`` | 1001 | 1001 |
| the route's ``max_response_duration`` (else ``WEBSOCKET_MAX_LIFETIME``) | 1001 | 1001 |

The connection counts as one request in flight for its instance and service until it ends; its
access-log line (status 101) is written then, with its duration.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import EXTERNAL_CLOSE_CODES, CloseCode
from websockets.typing import Subprotocol

from ..conf import gateway_settings
from ..exceptions import BadGateway, BadRequest, GatewayError, GatewayTimeout
from ..exchange import Exchange
from ..pipeline import error_response, log_access, unexpected
from ..proxy.aio_pool import dial
from ..proxy.failures import connect_failure
from ..proxy.forwarder import Tries
from ..proxy.plan import headers_for, plan_request
from ..proxy.pool import tls_context
from ..selection import Choice
from .forward import Receive, next_choice
from .http import Send, refuse, send_response
from .stages import run_checks

logger = logging.getLogger(__name__)

#: The ASGI extension that lets an application answer a handshake with any HTTP response.
HTTP_DENIAL = "websocket.http.response"
#: The close a handshake gets when the server does not offer :data:`HTTP_DENIAL`.
POLICY_CLOSE = CloseCode.POLICY_VIOLATION
#: The access-log status of a connection the upstream accepted.
SWITCHED = 101

Close = tuple[int, str]  # a close frame's code and reason


class UpstreamRefused(BadGateway):
    """The instance answered the upgrade with another status than 101. It did answer, so it is
    not blamed and the request is not tried elsewhere."""


class _Connect(connect):
    """The ``websockets`` client, without redirects: a gateway never follows them."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


async def serve_websocket(
    scope: dict[str, Any],
    receive: Receive,
    send: Send,
    environ: dict[str, Any],
    exchange: Exchange | None,
    refusal: GatewayError | None,
) -> None:
    """Answer one ``websocket`` scope the route table took (``refusal``: it refused it)."""
    if (await receive())["type"] != "websocket.connect":
        return  # the client left before the handshake reached the application
    answer = _handshake_answer(scope, send)
    if exchange is None:
        assert refusal is not None
        await refuse(answer, environ, refusal)
        return
    try:
        if not exchange.route.websocket:
            raise BadRequest("This route does not carry WebSocket upgrades.")
        await run_checks(exchange)
        offered = [Subprotocol(name) for name in scope.get("subprotocols") or ()]
        upstream, tries, choice = await _open(exchange, offered or None)
    except GatewayError as error:
        await send_response(answer, error_response(exchange, error), exchange)
        return
    except Exception:  # a bug: still answer in the gateway's format
        await send_response(answer, error_response(exchange, unexpected(exchange)), exchange)
        return
    try:
        await _accepted(exchange, receive, send, upstream, tries)
    finally:
        upstream.transport.abort()  # a no-op once closed; closes it when cancelled
        tries.finished(choice)
        log_access(exchange, SWITCHED)


async def _accepted(
    exchange: Exchange, receive: Receive, send: Send, upstream: ClientConnection, tries: Tries
) -> None:
    """Accept the client with the upstream's subprotocol (and the gateway's own headers: the
    request id, ``RateLimit-*``), relay, then close both sides as the relay ended."""
    own = ((gateway_settings.REQUEST_ID_HEADER, exchange.request_id), *exchange.response_headers)
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in own]
    await send(
        {"type": "websocket.accept", "subprotocol": upstream.subprotocol, "headers": headers}
    )
    lifetime = tries.plan.timeouts.response or gateway_settings.WEBSOCKET_MAX_LIFETIME
    try:
        ending = await _relay(receive, send, upstream, lifetime)
    except Exception:
        logger.exception("WebSocket relay failed (request %s)", exchange.request_id)
        ending = _Ending.both(CloseCode.INTERNAL_ERROR, "")
    await _close(send, upstream, ending)


def _handshake_answer(scope: dict[str, Any], send: Send) -> Send:
    """A ``send`` for the HTTP shell's responses that answers the handshake instead: the
    response itself through :data:`HTTP_DENIAL`, else a close (the body cannot be sent)."""
    if HTTP_DENIAL in (scope.get("extensions") or {}):

        async def deny(message: dict[str, Any]) -> None:
            await send({**message, "type": "websocket." + message["type"]})

        return deny

    async def close(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status = HTTPStatus(message["status"])
            reason = f"{status.value} {status.phrase}"
            await send({"type": "websocket.close", "code": POLICY_CLOSE, "reason": reason})

    return close


async def _open(
    exchange: Exchange, subprotocols: list[Subprotocol] | None
) -> tuple[ClientConnection, Tries, Choice]:
    """The upstream connection, tried on instances as the retry policy allows (the HTTP
    shell's loop, :func:`~.forward.aforward`, with a handshake for a request)."""
    tries = Tries(exchange, plan_request(exchange, body=False))
    choice: Choice | None = None
    try:
        while True:
            choice = await next_choice(tries)
            try:
                upstream = await _handshake(tries, choice, subprotocols)
            except UpstreamRefused:
                choice.succeeded()
                raise
            except GatewayError as error:
                tries.failed(choice, error)
                continue
            choice.succeeded()
            return upstream, tries, choice
    except BaseException:
        tries.finished(choice)
        raise


async def _handshake(
    tries: Tries, choice: Choice, subprotocols: list[Subprotocol] | None
) -> ClientConnection:
    """Connect within the connect timeout; then TLS and the upgrade's answer within the read
    timeout, as a response head. The planned headers go along, less what the client library
    writes itself (``Host`` comes from the URI, ``Sec-WebSocket-*``)."""
    plan, endpoint = tries.plan, choice.endpoint
    sock = await dial(endpoint, plan.timeouts.connect)
    host, *headers = headers_for(plan, endpoint)
    secure = endpoint.scheme == "https"
    try:
        return await _Connect(
            f"{'wss' if secure else 'ws'}://{host[1]}{plan.target}",
            sock=sock,
            ssl=tls_context(endpoint.tls_verify) if secure else None,
            server_hostname=endpoint.host if secure else None,
            additional_headers=[
                h for h in headers if not h[0].lower().startswith("sec-websocket-")
            ],
            subprotocols=subprotocols,
            user_agent_header=None,  # the client's own passes through
            proxy=None,
            compression=None,
            open_timeout=plan.timeouts.read,
            max_size=gateway_settings.WEBSOCKET_MAX_MESSAGE_SIZE,
        )
    except BaseException as exc:
        sock.close()  # harmless where the transport closed it already
        failure = _handshake_failure(exc)
        if failure is None:
            raise
        raise failure from exc


def _handshake_failure(exc: BaseException) -> GatewayError | None:
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return UpstreamRefused(f"The upstream refused the WebSocket upgrade with status {status}.")
    if isinstance(exc, TimeoutError):
        return GatewayTimeout("The upstream did not answer the WebSocket upgrade in time.")
    if isinstance(exc, OSError):  # TLS, or a reset before the answer
        return connect_failure(exc)
    if isinstance(exc, InvalidHandshake):
        return BadGateway(f"The upstream's answer to the WebSocket upgrade is invalid: {exc}.")
    return None


@dataclass(frozen=True, slots=True)
class _Ending:
    """How a relayed connection ends: the close each side is still owed (``None``: it closed)."""

    client: Close | None
    upstream: Close | None

    @classmethod
    def both(cls, code: int, reason: str) -> _Ending:
        return cls((code, reason), (code, reason))


class _Activity:
    """When a message last went either way (the idle timeout's clock)."""

    __slots__ = ("last",)

    def __init__(self, now: float) -> None:
        self.last = now


async def _relay(
    receive: Receive, send: Send, upstream: ClientConnection, lifetime: float | None
) -> _Ending:
    """Both directions until one ends, the connection idles or outlives its lifetime."""
    loop = asyncio.get_running_loop()
    activity = _Activity(loop.time())
    idle = gateway_settings.WEBSOCKET_IDLE_TIMEOUT
    ends = activity.last + lifetime if lifetime is not None else math.inf
    tasks = [
        asyncio.create_task(_to_upstream(receive, upstream, activity)),
        asyncio.create_task(_to_client(upstream, send, activity)),
    ]
    try:
        while True:
            now = loop.time()
            if now >= ends:
                return _Ending.both(CloseCode.GOING_AWAY, "maximum lifetime reached")
            quiet_until = activity.last + idle if idle is not None else math.inf
            if now >= quiet_until:
                return _Ending.both(CloseCode.GOING_AWAY, "idle timeout")
            wake = min(ends, quiet_until)
            timeout = None if wake == math.inf else wake - now
            done, _ = await asyncio.wait(
                tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if done:  # an exception only if no direction ended cleanly
                clean = [task for task in done if task.exception() is None]
                return (clean or list(done))[0].result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _to_upstream(
    receive: Receive, upstream: ClientConnection, activity: _Activity
) -> _Ending:
    limit = gateway_settings.WEBSOCKET_MAX_MESSAGE_SIZE
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return _Ending(None, _client_close(message.get("code", 1005), message.get("reason")))
        text = message.get("text")
        data: bytes = text.encode() if text is not None else message.get("bytes") or b""
        if limit is not None and len(data) > limit:
            return _Ending.both(CloseCode.MESSAGE_TOO_BIG, "message too big")
        activity.last = asyncio.get_running_loop().time()
        try:
            await upstream.send(data, text=text is not None)
        except ConnectionClosed as exc:
            return _Ending(_upstream_close(exc), None)


async def _to_client(upstream: ClientConnection, send: Send, activity: _Activity) -> _Ending:
    while True:
        try:
            data = await upstream.recv()
        except ConnectionClosed as exc:
            return _Ending(_upstream_close(exc), None)
        activity.last = asyncio.get_running_loop().time()
        key = "text" if isinstance(data, str) else "bytes"
        try:
            await send({"type": "websocket.send", key: data})
        except OSError:  # the server's word for a client that has gone (uvicorn)
            return _Ending(None, (CloseCode.GOING_AWAY, "client gone"))


def _sendable(code: int) -> bool:
    """Whether a close frame may carry ``code`` (RFC 6455 §7.4: not 1005, 1006, 1015...)."""
    return code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000


def _client_close(code: int, reason: str | None) -> Close:
    """The close the upstream gets for the client's: the same, where a frame can carry it."""
    if code == CloseCode.NO_STATUS_RCVD:
        return CloseCode.NORMAL_CLOSURE, ""
    if not _sendable(code):  # 1006: the connection was lost
        return CloseCode.GOING_AWAY, "client connection lost"
    return code, reason or ""


def _upstream_close(exc: ConnectionClosed) -> Close:
    """The close the client gets for the upstream's end."""
    if exc.rcvd is not None:
        code = exc.rcvd.code
        return (CloseCode.NORMAL_CLOSURE, "") if not _sendable(code) else (code, exc.rcvd.reason)
    if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
        return CloseCode.MESSAGE_TOO_BIG, "message too big"
    return CloseCode.BAD_GATEWAY, "upstream connection lost"


async def _close(send: Send, upstream: ClientConnection, ending: _Ending) -> None:
    """Tell each side what it is owed, at once; a side that left meanwhile needs nothing."""
    closes = []
    if ending.client is not None:
        code, reason = ending.client
        closes.append(send({"type": "websocket.close", "code": code, "reason": reason}))
    if ending.upstream is not None:
        closes.append(upstream.close(*ending.upstream))
    await asyncio.gather(*closes, return_exceptions=True)
