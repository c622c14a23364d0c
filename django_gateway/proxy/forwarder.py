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
from functools import lru_cache, partial
from urllib.parse import unquote_plus

from django.http.response import HttpResponseBase

from ..balancing import LOAD_AWARE, InFlight, hash_key
from ..conf import gateway_settings
from ..config import CompiledRoute, Instance
from ..discovery import instances_for
from ..exceptions import (
    GatewayError,
    ServiceUnavailable,
    UpstreamConnectError,
    UpstreamConnectTimeout,
)
from ..exchange import Exchange
from ..paths import encode_path
from ..runtime import runtime
from .body import RequestBody, request_body
from .headers import (
    ForwardContext,
    LocationRewrite,
    environ_headers,
    identity_headers,
    request_headers,
    response_headers,
)
from .pool import Endpoint, endpoint_for
from .response import build_response
from .transport import (
    NoResponse,
    ResponseCut,
    Timeouts,
    UpstreamRequest,
    UpstreamResponse,
)

logger = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


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
        scheme=exchange.request.scheme,
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


def _timeouts(exchange: Exchange) -> Timeouts:
    route, service = exchange.route, exchange.route.service
    return _timeouts_for(
        route.connect_timeout or service.connect_timeout,
        route.read_timeout or service.read_timeout,
        route.timeout or service.timeout,
        route.max_response_duration,
    )


@lru_cache(maxsize=1024)
def _timeouts_for(connect: float, read: float, total: float, response: float | None) -> Timeouts:
    return Timeouts(connect=connect, read=read, total=total, response=response)


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


def _pick(exchange: Exchange, tried: set[Instance]) -> Instance:
    service = exchange.route.service
    instances = instances_for(service, runtime.watchers)
    name = service.name
    if len(instances) == 1:  # nothing to balance
        instance = instances[0]
        if instance not in tried and runtime.ejections.begin((name, instance.host, instance.port)):
            return instance
        raise ServiceUnavailable(
            f"The only instance of service {name!r} is ejected after failures.",
            retry_after=runtime.ejections.retry_after([(name, instance.host, instance.port)]),
        )
    kind = service.load_balancing
    balancer = runtime.balancers.for_service(name, instances, kind)
    key = hash_key(service, exchange) if kind == "consistent_hash" else None
    skipped: set[Instance] = set()
    while True:
        instance = balancer.pick(
            lambda i: (
                i not in tried
                and i not in skipped
                and runtime.ejections.available((name, i.host, i.port))
            ),
            key,
        )
        if instance is None:
            keys = [(name, i.host, i.port) for i in instances]
            raise ServiceUnavailable(
                f"Every instance of service {service.name!r} is ejected after failures.",
                retry_after=runtime.ejections.retry_after(keys),
            )
        if runtime.ejections.begin((name, instance.host, instance.port)):
            return instance
        skipped.add(instance)  # another thread took its probe slot a moment ago


def _count_until_finished(
    response: HttpResponseBase, upstream: UpstreamResponse, in_flight: InFlight, instance: Instance
) -> None:
    """End the try's in-flight count when its response is finished: now for a body that came
    with the head, else when the WSGI server closes the response (the body fully sent, or the
    client gone). Django runs ``_resource_closers`` exactly once, from ``close()``."""
    if upstream.complete:
        in_flight.release(instance)
    else:
        response._resource_closers.append(partial(in_flight.release, instance))  # type: ignore[attr-defined]


def forward(exchange: Exchange) -> HttpResponseBase:
    route, service, environ = exchange.route, exchange.route.service, exchange.environ
    body = request_body(environ, body_limit(route))
    target = upstream_target(exchange)
    ctx = forward_context(exchange)
    headers = request_headers(environ_headers(environ), ctx)
    timeouts = _timeouts(exchange)
    tried: set[Instance] = set()
    # In-flight counts are kept only for the algorithms that read them (per process, DESIGN §5).
    in_flight = (
        runtime.balancers.in_flight(service.name) if service.load_balancing in LOAD_AWARE else None
    )
    last_error: GatewayError | None = None
    started = time.monotonic()
    for attempt in range(1 + service.retries):
        if attempt and time.monotonic() - started >= timeouts.total:
            break  # retries never start once the route's deadline has passed
        try:
            instance = _pick(exchange, tried)
        except ServiceUnavailable:
            if last_error is not None:
                raise last_error from None
            raise
        tried.add(instance)
        key = (service.name, instance.host, instance.port)
        endpoint = endpoint_for(service.protocol, instance.host, instance.port, service.tls_verify)
        if not (route.preserve_host and ctx.host):  # HTTP/1.0 clients may send no Host
            headers[0] = ("Host", endpoint.host_header)
        exchange.upstream = endpoint.host_header
        exchange.tries += 1
        request = UpstreamRequest(exchange.method, target, headers, body)
        if in_flight is not None:
            in_flight.acquire(instance)
        try:
            upstream = _send(endpoint, request, timeouts, exchange, body)
        except BaseException as error:
            if in_flight is not None:
                in_flight.release(instance)
            if not isinstance(error, GatewayError):
                raise
            if error.status < 500:  # the client's fault (its body), not the instance's
                runtime.ejections.release_probe(key)
                raise
            runtime.ejections.failure(key)
            last_error = error
            if _may_retry(error, exchange, body):
                continue
            raise
        runtime.ejections.success(key)
        if route.max_response_duration is not None and not upstream.complete:
            upstream.on_cut = partial(_log_cut, exchange)
        rewrite_location = _location_rewriter(ctx, endpoint, service.path)
        response = build_response(
            upstream,
            response_headers(upstream.headers, ctx, rewrite_location),
            head_only=exchange.method == "HEAD",
        )
        if in_flight is not None:
            _count_until_finished(response, upstream, in_flight, instance)
        return response
    assert last_error is not None
    raise last_error


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
