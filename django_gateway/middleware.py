"""``GatewayMiddleware``: proxies requests that match a route, hands every other one to Django.

It sits near the top of ``MIDDLEWARE`` (system check ``django_gateway.E003`` says where) so that
middleware meant for the project's own views never sees, buffers or rewrites proxied traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase

from .admission import admit
from .conf import gateway_settings
from .exceptions import GatewayError, ServiceUnavailable, UpgradeNeedsASGI, problem_response
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
    if not snapshot.routes.routes:
        return None
    environ = request.META
    admission = admit(environ, snapshot.routes)
    if admission is None or not admission.ours:
        return None
    if admission.refusal is not None:
        return _refuse(request, admission.refusal)
    assert admission.match is not None  # a match, since nothing refused it
    if admission.match.route.websocket and _wants_websocket(environ):
        return _refuse(request, UpgradeNeedsASGI())  # a WSGI server cannot switch protocols
    return handle(new_exchange(environ, admission.path, admission.host, admission.match, snapshot))


def _wants_websocket(environ: dict[str, Any]) -> bool:
    return str(environ.get("HTTP_UPGRADE", "")).lower() == "websocket"


def _refuse(request: HttpRequest, error: GatewayError) -> HttpResponseBase:
    request_id = request_id_for(request.META)
    log_refusal(request.META, error.status, request_id)
    return problem_response(
        error, request_id=request_id, request_id_header=gateway_settings.REQUEST_ID_HEADER
    )
