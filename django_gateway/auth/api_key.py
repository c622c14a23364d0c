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

import base64
import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from django.db import DatabaseError
from django.utils import timezone

from ..conf import gateway_settings
from ..exceptions import ServiceUnavailable, Unauthorized
from . import usage
from .base import Identity

if TYPE_CHECKING:
    from ..pipeline import Exchange

logger = logging.getLogger(__name__)

KEY_PREFIX = "gw_"
PREFIX_LENGTH = 12
SECRET_BYTES = 32
#: Longest secret accepted: room for longer keys later, a cap so a huge header is refused cheaply.
MAX_SECRET_LENGTH = 128
MAX_KEY_LENGTH = len(KEY_PREFIX) + PREFIX_LENGTH + 1 + MAX_SECRET_LENGTH
_KEY = re.compile(rf"gw_([a-z2-7]{{{PREFIX_LENGTH}}})_[A-Za-z0-9_-]{{32,{MAX_SECRET_LENGTH}}}")

INVALID = "Invalid API key."


def hash_key(plaintext: str) -> str:
    """SHA-256 hex of the whole key.

    A fast hash is right here, unlike for passwords: a key carries 256 random bits, so nobody can
    guess it from its hash whatever the hash costs, and a slow hash (PBKDF2, bcrypt) would cost
    milliseconds on every request instead of well under a microsecond.
    """
    return hashlib.sha256(plaintext.encode("ascii")).hexdigest()


def generate_key() -> tuple[str, str, str]:
    """A new key as ``(plaintext, prefix, key_hash)``; only the last two are ever stored.

    The prefix is 60 random bits in lower-case base32 (no characters that look alike, safe in
    URLs, file names and log lines); the secret is 32 bytes from :mod:`secrets`, URL-safe base64.
    """
    prefix = base64.b32encode(secrets.token_bytes(8)).decode("ascii")[:PREFIX_LENGTH].lower()
    plaintext = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return plaintext, prefix, hash_key(plaintext)


def parse_key(text: str) -> tuple[str, str] | None:
    """``(prefix, plaintext)`` when ``text`` has the shape of a key, else ``None``.

    Checked by length first and then one anchored regex over a bounded string, so garbage costs
    no database query and no hashing.
    """
    if len(text) > MAX_KEY_LENGTH or not text.startswith(KEY_PREFIX):
        return None
    match = _KEY.fullmatch(text)
    return (match.group(1), text) if match else None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a request needs of an ``APIKey`` row; frozen so threads can share it."""

    id: int
    key_hash: str
    consumer_id: int
    expires_at: datetime | None
    revoked: bool


class KeyStore:
    """Per-snapshot LRU caches of prefix → :class:`KeyRecord`, and of prefixes that do not exist.

    Unknown prefixes are remembered in a cache of their own, so garbage keys reach the database
    once and a flood of them cannot push real keys out. Both are bounded by
    ``API_KEY_CACHE_SIZE``. Thread-safe; the database is read outside the lock, so a slow query
    never blocks requests for keys already cached (two threads missing the same prefix at once
    may both query it, which is harmless).
    """

    def __init__(self, size: int | None = None) -> None:
        self.size = gateway_settings.API_KEY_CACHE_SIZE if size is None else size
        self._found: OrderedDict[str, KeyRecord] = OrderedDict()
        self._missing: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._found) + len(self._missing)

    def get(self, prefix: str) -> KeyRecord | None:
        """The key with this prefix, from the cache or with one query."""
        with self._lock:
            record = self._found.get(prefix)
            if record is not None:
                self._found.move_to_end(prefix)
                return record
            if prefix in self._missing:
                self._missing.move_to_end(prefix)
                return None
        record = self._load(prefix)
        with self._lock:
            if record is None:
                self._remember(self._missing, prefix, None)
            else:
                self._remember(self._found, prefix, record)
        return record

    def _remember(self, cache: OrderedDict, prefix: str, value: KeyRecord | None) -> None:
        cache[prefix] = value
        cache.move_to_end(prefix)
        while len(cache) > self.size:
            cache.popitem(last=False)

    @staticmethod
    def _load(prefix: str) -> KeyRecord | None:
        """One query by the unique prefix. A database outage is a 503 (the key cannot be checked),
        not a 401 the client would take for a bad key, and is not cached."""
        from ..models import APIKey

        try:
            rows = list(
                APIKey.objects.filter(prefix=prefix).values_list(
                    "pk", "key_hash", "consumer_id", "expires_at", "revoked_at"
                )
            )
        except DatabaseError as exc:
            logger.warning("API keys cannot be looked up: the database failed", exc_info=True)
            raise ServiceUnavailable(
                "API keys cannot be checked right now.",
                retry_after=gateway_settings.RETRY_AFTER_UNAVAILABLE,
            ) from exc
        if not rows:
            return None
        pk, key_hash, consumer_id, expires_at, revoked_at = rows[0]
        return KeyRecord(pk, key_hash, consumer_id, expires_at, revoked_at is not None)


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
        """The identity for key ``text``, or :class:`Unauthorized`; the key is never logged."""
        parsed = parse_key(text)
        if parsed is None:
            logger.debug("API key refused: not of the gw_<prefix>_<secret> shape")
            raise Unauthorized(INVALID)
        prefix, plaintext = parsed
        record = exchange.snapshot.api_keys.get(prefix)
        if record is None or not hmac.compare_digest(record.key_hash, hash_key(plaintext)):
            logger.debug("API key refused: unknown prefix or wrong secret (prefix %s)", prefix)
            raise Unauthorized(INVALID)
        # The caller has proved it holds the key: it may learn why the key no longer works.
        if record.revoked:
            logger.debug("API key refused: revoked (prefix %s)", prefix)
            raise Unauthorized("This API key has been revoked.")
        if record.expires_at is not None and record.expires_at <= timezone.now():
            logger.debug("API key refused: expired (prefix %s)", prefix)
            raise Unauthorized("This API key has expired.")
        consumer = exchange.snapshot.consumers.get(record.consumer_id)
        if consumer is None:
            logger.debug("API key refused: consumer disabled (prefix %s)", prefix)
            raise Unauthorized("The consumer of this API key is disabled.")
        usage.record(record.id)
        return Identity(consumer, prefix, consumer.groups, credential_type="key")


api_key_authenticator = APIKeyAuthenticator()
