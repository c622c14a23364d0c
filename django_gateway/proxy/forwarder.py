"""Forwarding a matched request: pick an instance, send, retry where DESIGN §4 allows, respond.

Retry policy, in one place:

- the connection was never established (refused, connect timeout): any method, another instance;
- the connection died before any response byte: idempotent methods, or any request carrying an
  ``Idempotency-Key``, and only while the body can still be replayed;
- a read timeout or a malformed response: never retried (the upstream may have acted on it);
- no new try starts once the route's ``timeout`` has passed since the first one, and each try
  (its head, and a body small enough to buffer) has its own ``timeout``, so a request with
  retries gets its answer within about twice ``timeout`` at worst.

A pooled connection that turns out dead on first use is retried once on a fresh connection to the
same instance under the same rules, without counting as an instance failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

from django.http.response import HttpResponseBase

from ..conf import gateway_settings
from ..config import Instance
from ..exceptions import (
    GatewayError,
    ServiceUnavailable,
    UpstreamConnectError,
    UpstreamConnectTimeout,
)
from ..exchange import Exchange
from ..runtime import runtime
from ..selection import Choice, choose
from .body import RequestBody
from .failures import NoResponse, ResponseCut
from .headers import (
    ForwardContext,
    LocationRewrite,
    response_headers,
)
from .plan import UpstreamPlan, headers_for, plan_request
from .pool import Endpoint
from .response import StreamingProxyResponse, build_response
from .transport import Timeouts, UpstreamRequest, UpstreamResponse

logger = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


def _log_cut(exchange: Exchange, cut: ResponseCut) -> None:
    """The client sees only a truncated body, so the cut is said here, with the request's id."""
    route = exchange.route
    logger.warning(
        '%s "%s %s" cut off after max_response_duration=%ss route=%s upstream=%s id=%s',
        exchange.client_ip,
        exchange.method,
        repr(exchange.path)[1:-1],  # escaped, as in the access log
        route.max_response_duration,
        route.name,
        exchange.upstream,
        exchange.request_id,
        extra={"request_id": exchange.request_id, "route": route.name},
    )


def _location_rewriter(
    ctx: ForwardContext, endpoint: Endpoint, base: str
) -> Callable[[str], str] | None:
    """Rewrites a ``Location`` header; built only when a response carries one."""
    if not gateway_settings.REWRITE_LOCATION or not ctx.host:
        return None

    def rewrite(value: str) -> str:
        return LocationRewrite(
            upstream_origins=(endpoint.origin,),
            upstream_base=base,
            gateway_origin=f"{ctx.scheme}://{ctx.host}",
            client_base=ctx.prefix,
        ).rewrite(value)

    return rewrite


def _resendable(exchange: Exchange) -> bool:
    """May the upstream see this request twice? Idempotent methods, or an ``Idempotency-Key``."""
    return exchange.method in IDEMPOTENT_METHODS or "HTTP_IDEMPOTENCY_KEY" in exchange.environ


def _may_retry(error: GatewayError, exchange: Exchange, body: RequestBody | None) -> bool:
    if body is not None and not body.replayable:
        return False
    if isinstance(error, UpstreamConnectError | UpstreamConnectTimeout):
        return True
    return isinstance(error, NoResponse) and _resendable(exchange)


def forward(exchange: Exchange) -> HttpResponseBase:
    """The forwarding stage: plan, then for each try choose an instance, send, record how it
    went, and respond (or try again where the retry policy allows)."""
    plan = plan_request(exchange)
    service = exchange.route.service
    tried: set[Instance] = set()
    last_error: GatewayError | None = None
    started = time.monotonic()
    for attempt in range(1 + service.retries):
        if attempt and time.monotonic() - started >= plan.timeouts.total:
            break  # retries never start once the route's deadline has passed
        try:
            choice = choose(exchange, tried)
        except ServiceUnavailable:
            if last_error is not None:
                raise last_error from None
            raise
        tried.add(choice.instance)
        exchange.upstream = choice.endpoint.host_header
        exchange.tries += 1
        headers = headers_for(plan, choice.endpoint)
        request = UpstreamRequest(exchange.method, plan.target, headers, plan.body)
        try:
            upstream = _send(choice.endpoint, request, plan.timeouts, exchange, plan.body)
        except GatewayError as error:
            if error.status < 500:  # the client's fault (its body), not the instance's
                choice.not_its_fault()
                raise
            choice.failed()
            last_error = error
            if _may_retry(error, exchange, plan.body):
                continue
            raise
        except BaseException:
            choice.finished()
            raise
        choice.succeeded()
        return _respond(exchange, plan, choice, upstream)
    assert last_error is not None
    raise last_error


def _respond(
    exchange: Exchange, plan: UpstreamPlan, choice: Choice, upstream: UpstreamResponse
) -> HttpResponseBase:
    """The client's response; the try's in-flight count ends when that response is finished:
    now for a body that came with the head, else when the server closes the response (the body
    fully sent, or the client gone: :meth:`StreamingProxyResponse.close`)."""
    route = exchange.route
    if route.max_response_duration is not None and not upstream.complete:
        upstream.on_cut = partial(_log_cut, exchange)
    rewrite_location = _location_rewriter(plan.context, choice.endpoint, route.service.path)
    response = build_response(
        upstream,
        response_headers(upstream.headers, plan.context, rewrite_location),
        head_only=exchange.method == "HEAD",
    )
    if choice.in_flight is not None:
        if isinstance(response, StreamingProxyResponse):
            response.on_close = choice.finished
        else:
            choice.finished()
    return response


def _send(
    endpoint: Endpoint,
    request: UpstreamRequest,
    timeouts: Timeouts,
    exchange: Exchange,
    body: RequestBody | None,
) -> UpstreamResponse:
    transport = runtime.transport
    # A dead pooled connection is resent on a fresh one when the policy allows a retry; only the
    # other requests pay for the pool's staleness probe.
    replayable = _resendable(exchange) and (body is None or body.fits_replay_buffer)
    try:
        return transport.send(endpoint, request, timeouts, replayable=replayable)
    except NoResponse as error:
        if not (error.reused and replayable and (body is None or body.replayable)):
            raise
        return transport.send(endpoint, request, timeouts)
