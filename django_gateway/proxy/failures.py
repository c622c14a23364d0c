"""Low-level failures (DNS, sockets, TLS, HTTP parsing) as the gateway's errors, in one place.

The pool, the transport and the request body only say *where* something failed; this module says
what the client gets for it, so the table below is the whole story (DESIGN §4):

| where | what happened | gateway error |
|---|---|---|
| connect | no such name, address refused by policy, refused, unreachable | 502 (retryable) |
| connect | no connection within ``connect_timeout`` | 504 (retryable) |
| connect | TLS handshake failed (certificate, protocol) | 502 |
| send | the upstream stopped reading for ``read_timeout`` | 504 |
| send | reset or closed while sending | 502 :class:`NoResponse` (retryable by policy) |
| head | nothing by the try's deadline | 504, naming the limit that ended the try |
| head | reset or closed before any response byte | 502 :class:`NoResponse` (retryable by policy) |
| head | reset or closed after some of the head | 502 |
| head, body | bytes that are not HTTP/1.1, or an unasked protocol switch | 502 |
| body | silent for ``read_timeout`` | 504 |
| body | reset, or closed before its end | 502 |
| body | ``max_response_duration`` ran out mid-stream | :class:`ResponseCut`: the stream is cut |
| client body | the client's connection failed while sending its body | 400 |

Retry decisions (which of these may go to another instance) are the forwarder's.
"""

from __future__ import annotations

import socket
import ssl

from httptools import HttpParserError, HttpParserUpgrade

from ..exceptions import (
    BadGateway,
    BadRequest,
    GatewayError,
    GatewayTimeout,
    UpstreamConnectError,
    UpstreamConnectTimeout,
)
from ..netpolicy import ForbiddenAddress


class NoResponse(BadGateway):
    """The connection failed after the request was (partly) sent but before any response byte."""

    default_detail = "The upstream closed the connection without answering."

    def __init__(self, detail: str | None = None, *, reused: bool = False) -> None:
        super().__init__(detail)
        self.reused = reused


class ResponseCut(GatewayTimeout):
    """``max_response_duration`` ran out while the body streamed. The head is already on its way
    to the client, so this cannot become a 504: raised from the body iterator, it makes the WSGI
    server close the connection, and the client sees a body shorter than its ``Content-Length``
    or a chunked body without its last chunk, never a clean end."""


def connect_failure(exc: BaseException) -> GatewayError:
    """Resolving, connecting to or shaking hands with an instance failed."""
    if isinstance(exc, socket.gaierror):
        return UpstreamConnectError(f"Cannot resolve upstream host: {exc.strerror}.")
    if isinstance(exc, ForbiddenAddress):
        return UpstreamConnectError(f"{exc}.")
    if isinstance(exc, TimeoutError):
        return UpstreamConnectTimeout()
    if isinstance(exc, ssl.SSLError):
        return UpstreamConnectError(f"TLS handshake with the upstream failed: {exc.reason}.")
    reason = getattr(exc, "strerror", None) or exc
    return UpstreamConnectError(f"Connecting to the upstream failed: {reason}.")


def send_failure(exc: OSError, *, timed_out: bool, reused: bool) -> GatewayError:
    """Writing the request failed: the upstream stopped reading, or the connection broke."""
    if timed_out:
        return GatewayTimeout("The upstream stopped reading the request.")
    return NoResponse(f"Sending to the upstream failed: {exc.strerror or exc}.", reused=reused)


def head_failure(exc: OSError | None, *, received: bool, reused: bool) -> GatewayError:
    """The connection broke (``exc``) or closed (``None``) while the head was awaited."""
    if received:
        if exc is None:
            return BadGateway("The upstream closed the connection in the middle of the head.")
        return BadGateway("The upstream connection failed while sending the head.")
    if exc is None:
        return NoResponse(reused=reused)
    return NoResponse(f"The upstream reset the connection: {exc.strerror or exc}.", reused=reused)


def too_late(what: str, *, response_limit: bool) -> GatewayTimeout:
    """The 504 for a try that ran out of time, naming the limit that ended it."""
    limit = "within the route's max_response_duration" if response_limit else "in time"
    return GatewayTimeout(f"The upstream service did not {what} {limit}.")


def parse_failure(exc: HttpParserError | HttpParserUpgrade, *, in_body: bool) -> BadGateway:
    """What the upstream sent is not HTTP/1.1 (or switches protocols nobody asked for)."""
    if isinstance(exc, HttpParserUpgrade):
        return BadGateway("The upstream switched protocols, which was not asked for.")
    if in_body:
        return BadGateway("The upstream sent a malformed body.")
    return BadGateway("The upstream sent a response that is not valid HTTP/1.1.")


def body_failure(exc: OSError | None, *, timed_out: bool = False) -> GatewayError:
    """Reading a streamed body failed: silence, a broken connection, or an early close."""
    if timed_out:
        return GatewayTimeout("The upstream stopped sending the body.")
    if exc is None:
        return BadGateway("The upstream closed the connection in the middle of the body.")
    return BadGateway("The upstream connection failed in the middle of the body.")


def client_body_failure() -> BadRequest:
    """The client's own connection failed while it sent its body (the upstream is not blamed)."""
    return BadRequest("The client connection failed while sending the body.")
