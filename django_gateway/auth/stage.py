"""Route authentication: ``none``, ``key``, ``jwt`` or ``any``, as a pipeline stage.

``any`` takes whichever credential the request carries, an API key first. A credential that is
present but wrong is refused outright (it never falls through to the next kind), counts towards
the brute-force limit for the client address, and, like a missing one, lets the request proceed
as the route's anonymous consumer when it has one (Kong's ``anonymous``).
"""

from __future__ import annotations

from ..conf import gateway_settings
from ..config import Identity
from ..exceptions import Unauthorized
from ..exchange import Exchange
from ..runtime import runtime
from .api_key import api_key_authenticator
from .base import Authenticator
from .jwt import jwt_authenticator

AUTHENTICATORS: dict[str, tuple[Authenticator, ...]] = {
    "key": (api_key_authenticator,),
    "jwt": (jwt_authenticator,),
    "any": (api_key_authenticator, jwt_authenticator),
}


def authenticate(exchange: Exchange) -> None:
    """Set ``exchange.identity``, or raise 401 (429 for a client over the failure limit)."""
    route = exchange.route
    authenticators = AUTHENTICATORS.get(route.authentication)
    if not authenticators:
        return
    runtime.failures.check(exchange.client_ip)
    error: Unauthorized | None = None
    for authenticator in authenticators:
        try:
            identity = authenticator.authenticate(exchange)
        except Unauthorized as exc:
            runtime.failures.record_failure(exchange.client_ip)
            error = exc
            break
        if identity is not None:
            exchange.identity = identity
            return
    anonymous = route.anonymous_consumer
    if anonymous is not None:
        if error is not None:
            _mark_every_carrier(exchange, route.authentication)
        exchange.identity = Identity(anonymous, "", anonymous.groups, anonymous=True)
        return
    error = error or Unauthorized("This route needs credentials and the request carries none.")
    error.www_authenticate = challenges(route.authentication)
    raise error


def _mark_every_carrier(exchange: Exchange, mode: str) -> None:
    """A refused credential stopped the search early: mark every place a credential of this
    mode could be, so ``hide_credentials`` strips them all before the anonymous request goes on."""
    used = exchange.credential_use
    if mode in ("key", "any"):
        used.headers.update(name.lower() for name in gateway_settings.API_KEY_HEADERS)
        used.query_param = used.query_param or gateway_settings.API_KEY_QUERY_PARAM
    if mode in ("jwt", "any"):
        used.headers.add("authorization")
        used.cookie = used.cookie or gateway_settings.JWT_COOKIE


def challenges(mode: str) -> str:
    """The ``WWW-Authenticate`` value for a route's authentication mode."""
    return ", ".join(a.challenge for a in AUTHENTICATORS.get(mode, ()))
