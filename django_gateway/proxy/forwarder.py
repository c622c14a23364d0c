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
from typing import Any

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
    bodiless,
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


class Tries:
    """One request's tries, for both shells: the retry policy (module docstring), the service's
    in-flight cap (:mod:`django_gateway.concurrency`), and what each try owes its instance.

    A shell loops ``choice = tries.next()``, sends ``tries.request(choice)``, then calls
    :meth:`failed` (which raises unless another try may start) or, once a response is on its
    way, :meth:`finished` when it is done. Every exit from the loop without a response must call
    :meth:`finished` too (``choice=None``), so the service's count never leaks.
    """

    __slots__ = ("exchange", "last_error", "left", "plan", "service", "started", "tried")

    def __init__(self, exchange: Exchange, plan: UpstreamPlan) -> None:
        self.exchange, self.plan = exchange, plan
        service = exchange.route.service
        cap = service.max_concurrent_requests
        if cap is not None and not runtime.gates.enter(service.name, cap):
            raise ServiceUnavailable(
                f"Service {service.name!r} has {cap} requests in flight in this process, "
                "its max_concurrent_requests.",
                retry_after=gateway_settings.RETRY_AFTER_UNAVAILABLE,
            )
        self.service = service.name if cap is not None else None  # the gate to leave
        self.left = 1 + service.retries
        self.tried: set[Instance] = set()
        self.last_error: GatewayError | None = None
        self.started = time.monotonic()

    def next(self) -> Choice:
        """The instance for the next try; raises the last try's error when none may start
        (retries spent, the route's deadline passed, no instance left untried)."""
        last_error = self.last_error
        if last_error is not None and (
            not self.left or time.monotonic() - self.started >= self.plan.timeouts.total
        ):
            raise last_error  # retries never start once the route's deadline has passed
        try:
            choice = choose(self.exchange, self.tried)
        except ServiceUnavailable:
            if last_error is not None:
                raise last_error from None
            raise
        self.left -= 1
        self.tried.add(choice.instance)
        self.exchange.upstream = choice.endpoint.host_header
        self.exchange.tries += 1
        return choice

    def request(self, choice: Choice) -> UpstreamRequest[Any]:
        plan = self.plan
        headers = headers_for(plan, choice.endpoint)
        return UpstreamRequest(self.exchange.method, plan.target, headers, plan.body)

    def failed(self, choice: Choice, error: GatewayError) -> None:
        """The try failed with ``error``: blame the instance unless it was the client's fault,
        and raise unless the policy allows another try."""
        if error.status < 500:  # the client's fault (its body), not the instance's
            choice.not_its_fault()
            raise error
        choice.failed()
        self.last_error = error
        if not _may_retry(error, self.exchange, self.plan.body):
            raise error

    def resend_fresh(self, error: NoResponse) -> bool:
        """A pooled connection died before answering: may the same try go again on a fresh
        connection (not counted as an instance failure)?"""
        body = self.plan.body
        return error.reused and self.replayable and (body is None or body.replayable)

    @property
    def replayable(self) -> bool:
        """The caller resends on a fresh connection if a pooled one is dead, so the pool may
        skip its staleness probe; only the other requests pay for it."""
        body = self.plan.body
        return _resendable(self.exchange) and (body is None or body.fits_replay_buffer)

    def finished(self, choice: Choice | None) -> None:
        """The request is done (its response sent or abandoned, or no response at all)."""
        if choice is not None:
            choice.finished()
        service, self.service = self.service, None
        if service is not None:
            runtime.gates.leave(service)


def forward(exchange: Exchange) -> HttpResponseBase:
    """The forwarding stage: plan, then for each try choose an instance, send, record how it
    went, and respond (or try again where the retry policy allows)."""
    plan = plan_request(exchange)
    tries = Tries(exchange, plan)
    choice: Choice | None = None
    try:
        while True:
            choice = tries.next()
            try:
                upstream = _send(choice, tries, plan.timeouts)
            except GatewayError as error:
                tries.failed(choice, error)
                continue
            choice.succeeded()
            return _respond(exchange, plan, choice, upstream, tries)
    except BaseException:
        tries.finished(choice)
        raise


def upstream_response_headers(
    exchange: Exchange, plan: UpstreamPlan, choice: Choice, upstream: UpstreamResponse | Any
) -> list[tuple[str, str]]:
    """The response head the client gets (header policy, ``Location`` rewritten); sets up the
    cut warning of a stream under ``max_response_duration``. Shared by both shells."""
    route = exchange.route
    if route.max_response_duration is not None and not upstream.complete:
        upstream.on_cut = partial(_log_cut, exchange)
    rewrite_location = _location_rewriter(plan.context, choice.endpoint, route.service.path)
    headers = response_headers(upstream.headers, plan.context, rewrite_location)
    if bodiless(upstream.status) and upstream.status != 304:  # a 304 may repeat its 200's length
        headers = [h for h in headers if h[0].lower() != "content-length"]
    return headers


def _respond(
    exchange: Exchange,
    plan: UpstreamPlan,
    choice: Choice,
    upstream: UpstreamResponse,
    tries: Tries,
) -> HttpResponseBase:
    """The client's response; the request is finished now for a body that came with the head,
    else when the server closes the response (the body fully sent, or the client gone:
    :meth:`StreamingProxyResponse.close`)."""
    response = build_response(
        upstream,
        upstream_response_headers(exchange, plan, choice, upstream),
        head_only=exchange.method == "HEAD",
    )
    if isinstance(response, StreamingProxyResponse):
        response.on_close = partial(tries.finished, choice)
    else:
        tries.finished(choice)
    return response


def _send(choice: Choice, tries: Tries, timeouts: Timeouts) -> UpstreamResponse:
    transport, request = runtime.transport, tries.request(choice)
    try:
        return transport.send(choice.endpoint, request, timeouts, replayable=tries.replayable)
    except NoResponse as error:
        if not tries.resend_fresh(error):
            raise
        return transport.send(choice.endpoint, request, timeouts)
