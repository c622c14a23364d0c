"""The gateway's exception tree and the one handler that renders it.

Every failure on the request path is *raised* as one of these and turned into an
``application/problem+json`` response (RFC 9457) in exactly one place, :func:`problem_response`::

    GatewayError (500, never raised on purpose: a 500 is a bug)
    ├── BadRequest (400)
    │   └── HostMissing
    ├── Unauthorized (401)           missing or invalid credentials; carries WWW-Authenticate
    ├── Forbidden (403)              known, but not allowed (ACL groups, IP rules)
    ├── LengthRequired (411)
    ├── PayloadTooLarge (413)
    ├── TooManyRequests (429)        carries Retry-After
    ├── NotImplementedFraming (501)
    ├── BadGateway (502)             connection refused/reset, unparsable upstream response
    │   └── UpstreamConnectError     the connection was never established (safe to retry anything)
    ├── ServiceUnavailable (503)     no instance available; carries Retry-After
    └── GatewayTimeout (504)
        └── UpstreamConnectTimeout   connect timed out: also never established
"""

from __future__ import annotations

import json

from django.http import HttpResponse


class GatewayError(Exception):
    status = 500
    title = "Internal Gateway Error"
    default_detail = "The gateway failed to handle the request."

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: int | None = None,
        www_authenticate: str | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        self.retry_after = retry_after
        self.www_authenticate = www_authenticate
        super().__init__(self.detail)


class BadRequest(GatewayError):
    status = 400
    title = "Bad Request"
    default_detail = "The request is malformed."


class HostMissing(BadRequest):
    default_detail = "HTTP/1.1 requests must carry a Host header."


class Unauthorized(GatewayError):
    status = 401
    title = "Unauthorized"
    default_detail = "Valid credentials are required."


class Forbidden(GatewayError):
    status = 403
    title = "Forbidden"
    default_detail = "You are not allowed to use this route."


class TooManyRequests(GatewayError):
    status = 429
    title = "Too Many Requests"
    default_detail = "Too many requests; retry later."


class LengthRequired(GatewayError):
    status = 411
    title = "Length Required"
    default_detail = (
        "A chunked request body cannot be streamed by this server; send Content-Length."
    )


class PayloadTooLarge(GatewayError):
    status = 413
    title = "Content Too Large"
    default_detail = "The request body is larger than this route accepts."


class NotImplementedFraming(GatewayError):
    status = 501
    title = "Not Implemented"
    default_detail = "Only the chunked transfer coding is supported on requests."


class UpgradeNeedsASGI(GatewayError):
    status = 501
    title = "Not Implemented"
    default_detail = (
        "This route carries WebSocket upgrades, which the gateway's ASGI shell serves; this "
        "server runs the WSGI shell."
    )


class BadGateway(GatewayError):
    status = 502
    title = "Bad Gateway"
    default_detail = "The upstream service failed to answer correctly."


class UpstreamConnectError(BadGateway):
    """The TCP (or TLS) connection was never established, so the upstream saw nothing."""

    default_detail = "The upstream service refused the connection."


class ServiceUnavailable(GatewayError):
    status = 503
    title = "Service Unavailable"
    default_detail = "No healthy instance of the upstream service is available."


class GatewayTimeout(GatewayError):
    status = 504
    title = "Gateway Timeout"
    default_detail = "The upstream service did not answer in time."


class UpstreamConnectTimeout(GatewayTimeout):
    default_detail = "Connecting to the upstream service timed out."


class ProblemResponse(HttpResponse):
    """A gateway error rendered as problem details."""

    #: The unexpected error behind a 500 (set by the pipeline), for middleware and tests.
    exception: Exception | None = None


def problem_response(
    error: GatewayError, *, request_id: str, request_id_header: str = "X-Request-ID"
) -> ProblemResponse:
    """Render ``error`` as RFC 9457 problem details; the body never echoes request data."""
    body = {
        "type": "about:blank",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "request_id": request_id,
    }
    response = ProblemResponse(
        json.dumps(body), status=error.status, content_type="application/problem+json"
    )
    response[request_id_header] = request_id
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    if error.www_authenticate:
        response["WWW-Authenticate"] = error.www_authenticate
    return response
