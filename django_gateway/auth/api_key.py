"""API keys: ``gw_<prefix>_<secret>``, stored as a hash, looked up by prefix, checked per request.

A key is 12 random base32 characters of public *prefix* (shown in the admin, unique, the lookup
key and the ``X-Credential-Identifier`` sent upstream) and 32 random bytes of *secret*. The
database holds the SHA-256 of the whole key, never the key itself: it is shown once, when issued.

Lookups go through the snapshot's :class:`KeyStore`, a bounded per-process cache filled by one
query per unknown prefix, so a key seen before costs no database query; a new snapshot (any
configuration change, a revocation included) starts with an empty store, which is how revocation
reaches every process within ``CONFIG_POLL_INTERVAL``. Expiry is compared with the clock on every
request, so it needs no configuration change at all.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from urllib.parse import unquote_plus

from django.utils import timezone

from ..conf import gateway_settings
from ..config import ConsumerConfig, Identity
from ..exceptions import Unauthorized
from ..exchange import Exchange
from ..runtime import runtime
from .key_store import KeyRecord, hash_key, parse_key

logger = logging.getLogger(__name__)

INVALID = "Invalid API key."


def _header_sources() -> tuple[tuple[str, str], ...]:
    """``(WSGI environ key, lower-case header name)`` for each of ``API_KEY_HEADERS``."""
    return tuple(
        ("HTTP_" + name.upper().replace("-", "_"), name.lower())
        for name in gateway_settings.API_KEY_HEADERS
    )


def _one_key(values: list[str]) -> str | None:
    """The one key carried by these header and parameter values, ``None`` when they are empty.

    WSGI servers join a repeated header with commas (and a key never holds one), so each piece
    counts; the same key twice is fine, two different keys are refused.
    """
    found: str | None = None
    for value in values:
        for piece in value.split(",") if "," in value else (value,):
            piece = piece.strip()
            if not piece:
                continue
            if found is not None and found != piece:
                raise Unauthorized("Send one API key per request.")
            found = piece
    return found


class APIKeyAuthenticator:
    """Reads a key from ``API_KEY_HEADERS`` (and ``API_KEY_QUERY_PARAM`` when set) and checks it.

    Every place that carries a key is recorded in ``exchange.credential_use`` before anything is
    checked, so ``hide_credentials`` strips all of them even when the request then proceeds as
    the route's anonymous consumer.
    """

    challenge = 'Key realm="django-gateway"'

    def authenticate(self, exchange: Exchange) -> Identity | None:
        environ = exchange.environ
        values: list[str] = []
        for environ_key, name in gateway_settings.derived("api_key_headers", _header_sources):
            value = environ.get(environ_key)
            if value is not None:
                exchange.credential_use.headers.add(name)
                values.append(value)
        param = gateway_settings.API_KEY_QUERY_PARAM
        if param:
            self._from_query(environ.get("QUERY_STRING", ""), param, exchange, values)
        if not values:
            return None
        found = _one_key(values)
        if found is None:  # only empty values: as if none were sent
            return None
        return self.verify(found, exchange)

    @staticmethod
    def _from_query(query: str, param: str, exchange: Exchange, values: list[str]) -> None:
        """Items are split exactly as the forwarder's ``without_query_param`` splits them, so the
        item read here is the item it removes (``hide_credentials``)."""
        if not query:
            return
        for item in query.split("&"):
            name, _, value = item.partition("=")
            if unquote_plus(name) == param:
                exchange.credential_use.query_param = param
                values.append(unquote_plus(value))

    def verify(self, text: str, exchange: Exchange) -> Identity:
        """The identity for key ``text``, or :class:`Unauthorized`; the key is never logged.

        Parse (pure), look the prefix up (the one I/O: the snapshot's key store, a query on a
        miss), decide (:func:`key_identity`, pure), then note the use."""
        parsed = parse_key(text)
        if parsed is None:
            logger.debug("API key refused: not of the gw_<prefix>_<secret> shape")
            raise Unauthorized(INVALID)
        prefix, plaintext = parsed
        record = exchange.snapshot.api_keys.get(prefix)
        if record is None:
            logger.debug("API key refused: unknown prefix (prefix %s)", prefix)
            raise Unauthorized(INVALID)  # the same answer as a wrong secret: no oracle
        identity = key_identity(prefix, plaintext, record, exchange.snapshot.consumers)
        runtime.usage.record(record.id)
        return identity


def key_identity(
    prefix: str,
    plaintext: str,
    record: KeyRecord,
    consumers: Mapping[int, ConsumerConfig],
    now: Callable[[], datetime] | None = None,
) -> Identity:
    """The decision once the key's row is known: the identity, or why the key does not work.
    ``now`` (default: Django's ``timezone.now``) is asked only for a key that expires."""
    if not hmac.compare_digest(record.key_hash, hash_key(plaintext)):
        logger.debug("API key refused: wrong secret (prefix %s)", prefix)
        raise Unauthorized(INVALID)
    # The caller has proved it holds the key: it may learn why the key no longer works.
    if record.revoked:
        logger.debug("API key refused: revoked (prefix %s)", prefix)
        raise Unauthorized("This API key has been revoked.")
    if record.expires_at is not None and record.expires_at <= (now or timezone.now)():
        logger.debug("API key refused: expired (prefix %s)", prefix)
        raise Unauthorized("This API key has expired.")
    consumer = consumers.get(record.consumer_id)
    if consumer is None:
        logger.debug("API key refused: consumer disabled (prefix %s)", prefix)
        raise Unauthorized("The consumer of this API key is disabled.")
    return Identity(consumer, prefix, consumer.groups, credential_type="key")


api_key_authenticator = APIKeyAuthenticator()
