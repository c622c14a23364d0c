"""``GatewayMiddleware``: proxies requests that match a route, hands every other one to Django.

It sits near the top of ``MIDDLEWARE`` (system check ``django_gateway.E003`` says where) so that
middleware meant for the project's own views never sees, buffers or rewrites proxied traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest
from django.http.response import HttpResponseBase

from .admission import host_refusal
from .conf import gateway_settings
from .exceptions import BadRequest, GatewayError, ServiceUnavailable, problem_response
from .hosts import canonical_host
from .paths import canonical_path, raw_request_path, refusal_probe_path
from .pipeline import handle, log_refusal, new_exchange, request_id_for
from .runtime import runtime

logger = logging.getLogger(__name__)


class GatewayMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = gateway_response(request)
        return self.get_response(request) if response is None else response


def gateway_response(request: HttpRequest) -> HttpResponseBase | None:
    """The gateway's answer to ``request``, or ``None`` when no route claims it (Django's turn).

    Shared by the middleware and the WSGI entry point (:mod:`django_gateway.wsgi`).
    """
    try:
        snapshot = runtime.snapshots.get()
    except Exception:
        logger.exception("The gateway configuration could not be loaded")
        return _refuse(
            request,
            ServiceUnavailable(
                "The gateway configuration is unavailable.",
                retry_after=gateway_settings.RETRY_AFTER_UNAVAILABLE,
            ),
        )
    table = snapshot.routes
    if not table.routes:
        return None
    environ = request.META
    method = request.method or "GET"
    host = canonical_host(environ.get("HTTP_HOST", ""))
    try:
        raw_path, decoded = raw_request_path(environ)
        path = canonical_path(raw_path, decoded=decoded)
    except BadRequest as error:
        # Refuse it only if it is ours: Django keeps its own answer for its own URLs.
        probe = refusal_probe_path(environ)
        return _refuse(request, error) if table.match(method, host, probe, environ) else None
    match = table.match(method, host, path, environ)
    if match is None:
        return None
    refusal = host_refusal(request, host)
    if refusal is not None:
        return _refuse(request, refusal)
    return handle(new_exchange(request, path, host, match, snapshot))


def _refuse(request: HttpRequest, error: GatewayError) -> HttpResponseBase:
    request_id = request_id_for(request.META)
    log_refusal(request, error.status, request_id)
    return problem_response(
        error, request_id=request_id, request_id_header=gateway_settings.REQUEST_ID_HEADER
    )
