"""Forwarding a matched request: pick an instance, send, retry where DESIGN §4 allows, respond.

Retry policy, in one place:

- the connection was never established (refused, connect timeout): any method, another instance;
- the connection died before any response byte: idempotent methods, or any request carrying an
  ``Idempotency-Key``, and only while the body can still be replayed;
- a read timeout or a malformed response: never retried (the upstream may have acted on it);
- no new try starts once the route's ``timeout`` has passed since the first one, so a request
  with retries ends within about twice ``timeout`` at worst.

A pooled connection that turns out dead on first use is retried once on a fresh connection to the
same instance under the same rules, without counting as an instance failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import unquote_plus

from django.http.response import HttpResponseBase

from ..balancing import Instance, balancers
from ..conf import gateway_settings
from ..discovery import instances_for
from ..exceptions import (
    GatewayError,
    ServiceUnavailable,
    UpstreamConnectError,
    UpstreamConnectTimeout,
)
from ..health import health
from ..paths import encode_path
from ..pipeline import Exchange
from ..routing import CompiledRoute
from .body import RequestBody, request_body
from .headers import (
    ForwardContext,
    LocationRewrite,
    environ_headers,
    identity_headers,
    request_headers,
    response_headers,
)
from .pool import ConnectionPool, Endpoint, endpoint_for
from .response import build_response
from .transport import NoResponse, Timeouts, Transport, UpstreamRequest, UpstreamResponse

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})

_transport: Transport | None = None


def get_transport() -> Transport:
    """The process's transport, created on first use (after gunicorn forks its workers)."""
    global _transport
    if _transport is None:
        _transport = Transport(
            ConnectionPool(
                gateway_settings.POOL_MAX_IDLE_PER_HOST, gateway_settings.POOL_IDLE_TIMEOUT
            )
        )
    return _transport


def reset_transport() -> None:
    """Drop the process's connection pool: after a fork (inherited sockets are not ours to
    share with the parent) and between tests."""
    global _transport
    if _transport is not None:
        _transport.pool.clear()
    _transport = None


os.register_at_fork(after_in_child=reset_transport)


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
        host=environ.get("HTTP_HOST", ""),
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
    )


@lru_cache(maxsize=1024)
def _timeouts_for(connect: float, read: float, total: float) -> Timeouts:
    return Timeouts(connect=connect, read=read, total=total)


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
    instances = instances_for(service)
    name = service.name
    if len(instances) == 1:  # nothing to balance
        instance = instances[0]
        if instance not in tried and health.begin((name, instance.host, instance.port)):
            return instance
        raise ServiceUnavailable(
            f"The only instance of service {name!r} is ejected after failures.",
            retry_after=health.retry_after([(name, instance.host, instance.port)]),
        )
    balancer = balancers.for_service(name, instances)
    skipped: set[Instance] = set()
    while True:
        instance = balancer.pick(
            lambda i: (
                i not in tried and i not in skipped and health.available((name, i.host, i.port))
            )
        )
        if instance is None:
            keys = [(name, i.host, i.port) for i in instances]
            raise ServiceUnavailable(
                f"Every instance of service {service.name!r} is ejected after failures.",
                retry_after=health.retry_after(keys),
            )
        if health.begin((name, instance.host, instance.port)):
            return instance
        skipped.add(instance)  # another thread took its probe slot a moment ago


def forward(exchange: Exchange) -> HttpResponseBase:
    route, service, environ = exchange.route, exchange.route.service, exchange.environ
    body = request_body(environ, body_limit(route))
    target = upstream_target(exchange)
    ctx = forward_context(exchange)
    headers = request_headers(environ_headers(environ), ctx)
    timeouts = _timeouts(exchange)
    tried: set[Instance] = set()
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
        try:
            upstream = _send(endpoint, request, timeouts, exchange, body)
        except GatewayError as error:
            if error.status < 500:  # the client's fault (its body), not the instance's
                health.release_probe(key)
                raise
            health.failure(key)
            last_error = error
            if _may_retry(error, exchange, body):
                continue
            raise
        health.success(key)
        rewrite_location = _location_rewriter(ctx, endpoint, service.path)
        return build_response(
            upstream,
            response_headers(upstream.headers, ctx, rewrite_location),
            head_only=exchange.method == "HEAD",
        )
    assert last_error is not None
    raise last_error


def _send(
    endpoint: Endpoint,
    request: UpstreamRequest,
    timeouts: Timeouts,
    exchange: Exchange,
    body: RequestBody | None,
) -> UpstreamResponse:
    transport = get_transport()
    # A dead pooled connection is resent on a fresh one when the policy allows a retry; only the
    # other requests pay for the pool's staleness probe.
    replayable = _resendable(exchange) and (body is None or body.fits_replay_buffer)
    try:
        return transport.send(endpoint, request, timeouts, replayable=replayable)
    except NoResponse as error:
        if not (error.reused and replayable and (body is None or body.replayable)):
            raise
        return transport.send(endpoint, request, timeouts)
