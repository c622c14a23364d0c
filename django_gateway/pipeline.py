"""The per-request state (:class:`Exchange`) and the sequence a matched request goes through.

Stages talk through typed fields of the Exchange, never through an untyped dict. Every failure is
raised as a :class:`~django_gateway.exceptions.GatewayError` and rendered in one place; the access
log runs for every outcome, errors included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from django.http.response import HttpResponseBase

from .auth.stage import authenticate
from .conf import gateway_settings
from .exceptions import GatewayError, ProblemResponse, problem_response
from .exchange import Exchange
from .hosts import canonical_host
from .netpolicy import client_address, peer_is_trusted
from .permissions import check_groups, restrict_ip
from .proxy.forwarder import forward
from .proxy.headers import valid_request_id
from .routing import RouteMatch
from .runtime import runtime
from .snapshot import Snapshot
from .throttling.stage import throttle

access_logger = logging.getLogger("django_gateway.access")
logger = logging.getLogger(__name__)


def _request_id_environ_key() -> str:
    header: str = gateway_settings.REQUEST_ID_HEADER
    return "HTTP_" + header.upper().replace("-", "_")


def request_id_for(environ: Mapping[str, Any]) -> str:
    """The client's request id when it is well-formed, else a new one."""
    incoming = environ.get(gateway_settings.derived("request_id_key", _request_id_environ_key))
    return incoming if valid_request_id(incoming) else runtime.request_ids.new()


def new_exchange(
    environ: dict[str, Any], path: str, host: str, match: RouteMatch, snapshot: Snapshot
) -> Exchange:
    """The Exchange for a request the route table matched; ``environ`` in CGI names (DESIGN §3:
    both shells build the same one)."""
    peer = environ.get("REMOTE_ADDR", "")
    return Exchange(
        environ=environ,
        # None only under a server that leaves out wsgi.url_scheme, which PEP 3333 requires:
        # then http, Django's own default.
        scheme=environ.get("wsgi.url_scheme") or "http",
        method=environ.get("REQUEST_METHOD") or "GET",
        path=path,
        host=host,
        match=match,
        request_id=request_id_for(environ),
        peer=peer,
        client_ip=client_address(peer, environ.get("HTTP_X_FORWARDED_FOR")),
        peer_trusted=peer_is_trusted(peer),
        snapshot=snapshot,
    )


#: IP rules (403) before authentication (401, 429), group ACLs (401/403) after it, rate limits
#: (429) once the consumer is known and allowed; then the request is forwarded.
CHECKS = (restrict_ip, authenticate, check_groups, throttle)


def handle(exchange: Exchange) -> HttpResponseBase:
    """Run a matched request to its response; errors become problem+json, never a 500."""
    try:
        for check in CHECKS:
            check(exchange)
        response = forward(exchange)
    except GatewayError as error:
        response = error_response(exchange, error)
    except Exception as exc:  # a bug: still answer in the gateway's format, and say so loudly
        response = error_response(exchange, unexpected(exchange))
        response.exception = exc
    if exchange.response_headers:
        # Straight into Django's header store (ResponseHeaders._store, private): the gateway's own
        # names and decimal values need none of the checks ResponseHeaders.__setitem__ makes, and
        # they replace an upstream's. Measured (Django 5.2, CPython 3.11): 3 headers 0.36 µs
        # against 1.32 µs through response.headers[name] = value, 5 headers 0.53 against 2.07.
        store = response.headers._store
        for name, value in exchange.response_headers:
            store[name.lower()] = (name, value)
    log_access(exchange, response.status_code)
    return response


def error_response(exchange: Exchange, error: GatewayError) -> ProblemResponse:
    return problem_response(
        error, request_id=exchange.request_id, request_id_header=gateway_settings.REQUEST_ID_HEADER
    )


def unexpected(exchange: Exchange) -> GatewayError:
    """The answer to a bug (logged with its traceback): still a problem+json, never Django's 500
    page."""
    logger.exception("Unhandled error while proxying request %s", exchange.request_id)
    return GatewayError()


def log_access(exchange: Exchange, status: int) -> None:
    if not _logging_enabled():
        return
    route = exchange.route
    _log(
        exchange.client_ip,
        exchange.method,
        exchange.host,
        exchange.path,
        status,
        route=route.name,
        service=route.service.name,
        upstream=exchange.upstream or "-",
        tries=exchange.tries,
        elapsed=time.perf_counter() - exchange.started,
        request_id=exchange.request_id,
    )


def log_refusal(environ: Mapping[str, Any], status: int, request_id: str) -> None:
    """Requests the gateway refused before a route took them (bad path, Host) are logged too."""
    if not _logging_enabled():
        return
    _log(
        client_address(environ.get("REMOTE_ADDR", ""), environ.get("HTTP_X_FORWARDED_FOR")),
        environ.get("REQUEST_METHOD") or "-",
        canonical_host(environ.get("HTTP_HOST", "")),
        environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace"),
        status,
        route="-",
        service="-",
        upstream="-",
        tries=0,
        elapsed=0.0,
        request_id=request_id,
    )


def _logging_enabled() -> bool:
    return gateway_settings.ACCESS_LOG and access_logger.isEnabledFor(logging.INFO)


def _log(
    client_ip: str,
    method: str,
    host: str,
    path: str,
    status: int,
    *,
    route: str,
    service: str,
    upstream: str,
    tries: int,
    elapsed: float,
    request_id: str,
) -> None:
    access_logger.info(
        '%s "%s %s" %s host=%s route=%s service=%s upstream=%s tries=%s %.1fms id=%s',
        client_ip,
        method,
        repr(path)[1:-1],  # escaped (no forged log lines); never the query: it may hold credentials
        status,
        repr(host)[1:-1] or "-",
        route,
        service,
        upstream,
        tries,
        elapsed * 1000,
        request_id,
        extra={"request_id": request_id, "route": route, "service": service, "status": status},
    )
