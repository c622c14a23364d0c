"""``GatewayASGIMiddleware``: serves requests that match a route on the event loop, hands every
other one (and ``lifespan``) to the wrapped ASGI application untouched.

A matched request never becomes an ``HttpRequest``, never meets Django's middleware and never
hops to a thread on the hot path: the route table, credentials and limits are in the
per-process snapshot, and every decision is the shared core's (DESIGN §3), so the WSGI and the
ASGI shells answer alike. Only the I/O differs: the async transport and Redis limiter, and the
offload threads for what would block (:mod:`.offload`).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..admission import admit
from ..conf import gateway_settings
from ..exceptions import ServiceUnavailable
from ..pipeline import new_exchange
from .forward import Receive
from .http import Send, refuse, serve_http
from .offload import current_snapshot
from .scope import environ_from_scope
from .websocket import serve_websocket

logger = logging.getLogger(__name__)

ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


class GatewayASGIMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._settled = False

    def _settle(self) -> None:
        """Once the first snapshot is loaded, move everything alive so far (Django, the
        project, the route table) out of the garbage collector's sight (``gc.freeze``).

        With a thousand requests in flight, a full collection walked all of it and stopped the
        loop for 130 to 200 ms every few seconds; it now walks only what was made since.
        """
        self._settled = True
        gc.freeze()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (kind == "http" or kind == "websocket") and await self._serve(scope, receive, send):
            return
        await self.app(scope, receive, send)

    async def _serve(self, scope: dict[str, Any], receive: Receive, send: Send) -> bool:
        """True when the gateway answered; False leaves the request to the wrapped app."""
        websocket = scope["type"] == "websocket"
        try:
            snapshot = await current_snapshot()
        except Exception:
            logger.exception("The gateway configuration could not be loaded")
            unavailable = ServiceUnavailable(
                "The gateway configuration is unavailable.",
                retry_after=gateway_settings.RETRY_AFTER_UNAVAILABLE,
            )
            environ = environ_from_scope(scope)
            if websocket:
                await serve_websocket(scope, receive, send, environ, None, unavailable)
            else:
                await refuse(send, environ, unavailable)
            return True
        if not self._settled:
            self._settle()
        if not snapshot.routes.routes:
            return False
        environ = environ_from_scope(scope)
        admission = admit(environ, snapshot.routes)
        if admission is None or not admission.ours:
            return False
        if admission.refusal is not None:
            if websocket:
                await serve_websocket(scope, receive, send, environ, None, admission.refusal)
            else:
                await refuse(send, environ, admission.refusal)
            return True
        assert admission.match is not None  # a match, since nothing refused it
        exchange = new_exchange(environ, admission.path, admission.host, admission.match, snapshot)
        if websocket:
            await serve_websocket(scope, receive, send, environ, exchange, None)
        else:
            await serve_http(exchange, receive, send)
        return True
