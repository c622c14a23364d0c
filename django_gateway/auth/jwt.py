"""JWT bearer authentication: tokens verified against the credential their key claim names.

The token says which credential it claims (``JWT_KEY_CLAIM``, ``iss`` by default); the credential
alone decides how it is verified: its one algorithm (a token announcing any other is refused, which
is what defeats ``alg: none`` and HS256-signed-with-the-RSA-public-key), and its own key material
or JWKS URL. Header-supplied keys (``jku``, ``x5u``, ``jwk``, ``x5c``) are never looked at.

Key material is prepared once, when the snapshot is built (:func:`compile_credential`), so the
request path parses no PEM and, JWKS aside (see :mod:`.jwks`), touches no network.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from contextlib import suppress
from typing import Any

import jwt as pyjwt
from django.core.exceptions import ValidationError

from ..conf import gateway_settings
from ..config import Identity
from ..cookies import request_cookie
from ..exceptions import Unauthorized
from ..exchange import Exchange
from ..models.validation import group_names
from ..runtime import runtime
from .jwt_credentials import JWTCredentialConfig
from .token_cache import VerifiedToken

logger = logging.getLogger(__name__)

_MAX_GROUPS = 100  # names read from a groups claim; the rest are ignored
# Tokens are decoded through PyJWT's public API only: its own checks (base64 alphabet and padding
# included) are the ones that run, whatever a later PyJWT adds to them.
_decoder = pyjwt.PyJWT()


def _find_token(exchange: Exchange) -> str | None:
    """The token, from ``Authorization: Bearer`` or else the ``JWT_COOKIE`` cookie; where it was
    is recorded before any check, so ``hide_credentials`` strips it on every path."""
    header: str | None = exchange.environ.get("HTTP_AUTHORIZATION")
    if header:
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() == "bearer":
            exchange.credential_use.headers.add("authorization")
            return rest.strip()
    cookie = gateway_settings.JWT_COOKIE
    if cookie:
        value = request_cookie(exchange.environ, cookie)
        if value:
            exchange.credential_use.cookie = cookie
            return value.strip()
    return None


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload, unverified: enough to pick the credential, trusted for nothing else.
    (Padding is added generously: base64 ignores the surplus.)"""
    parts = token.split(".")
    if len(parts) == 3:
        try:
            header, payload = (json.loads(base64.urlsafe_b64decode(p + "=" * 3)) for p in parts[:2])
        except (ValueError, TypeError, RecursionError):  # binascii.Error is a ValueError
            header = payload = None
        if isinstance(header, dict) and isinstance(payload, dict):
            return header, payload
    raise Unauthorized("The bearer token is malformed.")


def _numeric(value: object) -> bool:
    """A NumericDate (RFC 7519): a JSON number; not a string, a boolean, NaN or infinity."""
    # JSON gives int, float or bool here, and bool (an int subclass) is no date.
    return isinstance(value, int | float) and type(value) is not bool and math.isfinite(value)


_ERRORS: tuple[tuple[type[pyjwt.PyJWTError], str], ...] = (
    (pyjwt.ExpiredSignatureError, "The token has expired."),
    (pyjwt.ImmatureSignatureError, "The token is not valid yet (nbf or iat is in the future)."),
    (pyjwt.InvalidAudienceError, "The token's audience (aud) is not accepted."),
    (pyjwt.InvalidSignatureError, "The token's signature is invalid."),
    (pyjwt.InvalidAlgorithmError, "The token's algorithm is not accepted for this credential."),
)


def _translate(exc: pyjwt.PyJWTError) -> Unauthorized:
    if isinstance(exc, pyjwt.MissingRequiredClaimError):  # only claims we asked for: exp, aud
        return Unauthorized(f"The token lacks the required {exc.claim!r} claim.")
    found = (detail for kind, detail in _ERRORS if isinstance(exc, kind))
    return Unauthorized(next(found, "The bearer token is invalid."))


def _candidate_keys(header: dict[str, Any], config: JWTCredentialConfig) -> tuple[Any, ...]:
    """The keys that may have signed the token: the credential's own material, or its JWKS's
    (the one I/O of JWT authentication: a fetch, cached per process, on a miss)."""
    if config.material is not None:
        return (config.material,)
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise Unauthorized("The bearer token is malformed.")
    keys = runtime.jwks.keys(config.jwks_url, config.algorithm, kid)
    if not keys:
        raise Unauthorized("No key of the credential's key set matches this token.")
    return tuple(keys)


def _verify(
    token: str, config: JWTCredentialConfig, keys: tuple[Any, ...]
) -> tuple[dict[str, Any], Any]:
    """The verified claims and the key that verified them (no I/O): signature with one of
    ``keys``, then the standard claims."""
    settings = gateway_settings
    require = ["exp"] if settings.JWT_REQUIRE_EXP or settings.JWT_MAXIMUM_EXPIRATION else []
    options: Any = {
        "require": require + (["aud"] if config.audience else []),
        "verify_aud": bool(config.audience),  # no audience configured: aud is not checked
        "verify_iss": False,  # the key claim already picked the credential
        "enforce_minimum_key_length": True,
    }
    for key in keys:  # one key, except for a kid-less token and a JWKS with several matches
        try:
            claims = _decoder.decode(
                token,
                key,
                algorithms=[config.algorithm],
                options=options,
                audience=config.audience or None,
                leeway=settings.JWT_LEEWAY,
            )
            return claims, key
        except pyjwt.InvalidSignatureError:
            continue
        except pyjwt.PyJWTError as exc:
            raise _translate(exc) from None
    raise Unauthorized("The token's signature is invalid.")


def _claim_groups(claims: dict[str, Any]) -> frozenset[str]:
    """Groups from ``JWT_GROUPS_CLAIM`` (a name, else a dotted path such as
    ``realm_access.roles``): valid group names only, the others ignored."""
    name = gateway_settings.JWT_GROUPS_CLAIM or ""
    value: object = claims.get(name)
    if value is None and "." in name:
        value = claims
        for key in name.split("."):
            value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, str):
        items: list[Any] = value.split()
    elif isinstance(value, list):
        items = [item for item in value if isinstance(item, str)]
    else:
        return frozenset()
    groups: set[str] = set()
    for item in items[:_MAX_GROUPS]:
        with suppress(ValidationError):
            groups.update(group_names([item]))
    return frozenset(groups)


class JWTAuthenticator:
    """``Authorization: Bearer <JWT>`` (or the ``JWT_COOKIE`` cookie)."""

    challenge = 'Bearer realm="django-gateway"'

    def authenticate(self, exchange: Exchange) -> Identity | None:
        token = _find_token(exchange)
        if token is None:
            return None
        settings = gateway_settings
        if len(token) > settings.JWT_MAX_TOKEN_BYTES:  # before any parsing
            raise Unauthorized("The bearer token is larger than this gateway accepts.")
        verified = exchange.snapshot.verified_tokens
        hit = verified.get(token)
        if hit is not None:
            if _still_good(hit, exchange):
                return hit.identity
            verified.discard(token)
        header, unverified = _unverified(token)
        name = unverified.get(settings.JWT_KEY_CLAIM)
        snapshot = exchange.snapshot
        config = snapshot.jwt_credentials.get(name) if isinstance(name, str) else None
        consumer = snapshot.consumers.get(config.consumer_id) if config else None
        if config is None or consumer is None:
            raise Unauthorized("The token does not name a known credential.")
        if header.get("alg") != config.algorithm:  # also catches a missing alg and "none"
            raise Unauthorized("The token's algorithm is not accepted for this credential.")
        if not config.usable:
            raise Unauthorized("The credential for this token cannot verify tokens.")
        if not all(_numeric(unverified[c]) for c in ("exp", "nbf", "iat") if c in unverified):
            raise Unauthorized("The token's exp, nbf and iat must be numeric dates.")
        try:
            claims, key = _verify(token, config, _candidate_keys(header, config))
        except Unauthorized as exc:
            logger.debug("JWT for credential %r refused: %s", config.key, exc.detail)
            raise
        maximum = settings.JWT_MAXIMUM_EXPIRATION
        if maximum is not None and claims["exp"] > time.time() + maximum + settings.JWT_LEEWAY:
            raise Unauthorized("The token is valid for longer than this gateway accepts.")
        identity = Identity(
            consumer, config.key, consumer.groups | _claim_groups(claims), credential_type="jwt"
        )
        verified.put(
            token,
            VerifiedToken(
                identity,
                claims.get("exp"),
                claims.get("nbf"),
                key if config.jwks_url else None,
                header.get("kid"),
            ),
        )
        return identity


def _still_good(hit: VerifiedToken, exchange: Exchange) -> bool:
    """A remembered token is accepted while its time claims hold and, for a JWKS credential, the
    key that verified it is still in the key set."""
    if not hit.still_valid(time.time(), gateway_settings.JWT_LEEWAY):
        return False
    if hit.key is None:
        return True
    config = exchange.snapshot.jwt_credentials.get(hit.identity.credential)
    if config is None:
        return False
    return hit.key in runtime.jwks.keys(config.jwks_url, config.algorithm, hit.kid)


jwt_authenticator = JWTAuthenticator()
