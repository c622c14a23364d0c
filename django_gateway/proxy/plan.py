"""What goes upstream for a request, whichever instance takes it: decided once, used twice.

:func:`plan_request` is the one place that works out the request line's target (canonical path
re-encoded under the service's base path, query byte for byte less a hidden credential), the
header policy's output, the body's framing (411/413/501 before any instance is contacted) and the
try's timeouts. ``forward`` sends the plan; the route tester prints it
(:func:`headers_for`), so the two cannot disagree about what the upstream would receive.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from ..conf import gateway_settings
from ..config import CompiledRoute
from ..exchange import Exchange
from ..paths import encode_path
from .body import request_body
from .headers import ForwardContext, environ_headers, identity_headers, request_headers
from .pool import Endpoint
from .transport import Timeouts


@dataclass(slots=True)
class UpstreamPlan:
    """One request's upstream side; only the ``Host`` header (``headers[0]``) depends on the
    instance chosen for a try (:func:`headers_for`)."""

    target: str  # the request-line target: encoded path and query
    context: ForwardContext
    headers: list[tuple[str, str]]
    #: None: no body to send. A ``RequestBody`` under WSGI; the ASGI shell plans without one
    #: and sets its ``AsyncRequestBody`` (each shell's transport sends its own kind).
    body: Any
    timeouts: Timeouts


def plan_request(exchange: Exchange, *, body: bool = True) -> UpstreamPlan:
    """The plan for ``exchange``; raises the gateway's 411/413/501 for a body it will not send.
    ``body=False`` leaves the body out (the tester's preview of a request refused for it)."""
    route = exchange.route
    context = forward_context(exchange)
    return UpstreamPlan(
        target=upstream_target(exchange),
        context=context,
        headers=request_headers(environ_headers(exchange.environ), context),
        body=request_body(exchange.environ, body_limit(route)) if body else None,
        timeouts=timeouts_for(route),
    )


def headers_for(plan: UpstreamPlan, endpoint: Endpoint) -> list[tuple[str, str]]:
    """The plan's headers as sent to ``endpoint``: ``Host`` is the instance's unless the route
    preserves the client's (an HTTP/1.0 client may have sent none)."""
    if not (plan.context.preserve_host and plan.context.host):
        plan.headers[0] = ("Host", endpoint.host_header)
    return plan.headers


def upstream_path(exchange: Exchange) -> str:
    match = exchange.match
    base = match.route.service.path
    rest = match.remainder if match.route.strip_path else exchange.path
    return (base + rest) or "/"


def body_limit(route: CompiledRoute) -> int | None:
    """The largest request body the route accepts: its own limit, else ``MAX_BODY_SIZE``."""
    return (
        route.max_body_size if route.max_body_size is not None else gateway_settings.MAX_BODY_SIZE
    )


def upstream_target(exchange: Exchange) -> str:
    """The request-line target: the canonical path re-encoded, the query byte for byte (less a
    credential that ``hide_credentials`` removes)."""
    query = exchange.environ.get("QUERY_STRING", "")
    hidden = exchange.credential_use.query_param
    if hidden and query and exchange.route.hide_credentials:
        query = without_query_param(query, hidden)
    return encode_path(upstream_path(exchange)) + ("?" + query if query else "")


def without_query_param(query: str, name: str) -> str:
    """``query`` minus every ``name=...`` item; the other items are kept byte for byte."""
    return "&".join(
        item for item in query.split("&") if unquote_plus(item.partition("=")[0]) != name
    )


def forward_context(exchange: Exchange) -> ForwardContext:
    """What the upstream is told about the request; ``upstream_host`` is set per instance."""
    route, environ = exchange.route, exchange.environ
    used = exchange.credential_use
    hide = route.hide_credentials and bool(used)
    return ForwardContext(
        peer=exchange.peer,
        client_ip=exchange.client_ip,
        peer_trusted=exchange.peer_trusted,
        scheme=exchange.scheme,
        host=exchange.host,
        port=str(environ.get("SERVER_PORT", "")),
        prefix=exchange.match.matched if route.strip_path else "",
        upstream_host="",
        preserve_host=route.preserve_host,
        request_id=exchange.request_id,
        request_id_header=gateway_settings.REQUEST_ID_HEADER,
        via=gateway_settings.VIA,
        identity=identity_headers(exchange.identity),
        hidden_headers=frozenset(used.headers) if hide else frozenset(),
        hidden_cookie=used.cookie if hide else None,
    )


def timeouts_for(route: CompiledRoute) -> Timeouts:
    """The route's timeouts over its service's (one shared value per combination)."""
    service = route.service
    return _timeouts(
        route.connect_timeout or service.connect_timeout,
        route.read_timeout or service.read_timeout,
        route.timeout or service.timeout,
        route.max_response_duration,
    )


@lru_cache(maxsize=1024)
def _timeouts(connect: float, read: float, total: float, response: float | None) -> Timeouts:
    return Timeouts(connect=connect, read=read, total=total, response=response)
