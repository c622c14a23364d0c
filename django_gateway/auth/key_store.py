"""API keys at rest and in the per-snapshot cache: their shape, their hash, and the lookup by prefix.

A key is ``gw_<prefix>_<secret>``; only the prefix and a SHA-256 of the whole key are stored. The
authenticator (:mod:`.api_key`) parses a request's key, asks :class:`KeyStore` for the row behind
its prefix (one query, then cached per snapshot) and compares hashes in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from django.db import DatabaseError

from ..conf import gateway_settings
from ..exceptions import ServiceUnavailable
from ..models import APIKey
from ..offloop import must_not_block

logger = logging.getLogger(__name__)

_Value = TypeVar("_Value")  # what a lookup cache holds: a record, or None for a miss

KEY_PREFIX = "gw_"
PREFIX_LENGTH = 12
SECRET_BYTES = 32
#: Longest secret accepted: room for longer keys later, a cap so a huge header is refused cheaply.
MAX_SECRET_LENGTH = 128
MAX_KEY_LENGTH = len(KEY_PREFIX) + PREFIX_LENGTH + 1 + MAX_SECRET_LENGTH
_KEY = re.compile(rf"gw_([a-z2-7]{{{PREFIX_LENGTH}}})_[A-Za-z0-9_-]{{32,{MAX_SECRET_LENGTH}}}")


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
        must_not_block("an API-key lookup")
        record = self._load(prefix)
        with self._lock:
            if record is None:
                self._remember(self._missing, prefix, None)
            else:
                self._remember(self._found, prefix, record)
        return record

    def _remember(self, cache: OrderedDict[str, _Value], prefix: str, value: _Value) -> None:
        cache[prefix] = value
        cache.move_to_end(prefix)
        while len(cache) > self.size:
            cache.popitem(last=False)

    @staticmethod
    def _load(prefix: str) -> KeyRecord | None:
        """One query by the unique prefix. A database outage is a 503 (the key cannot be checked),
        not a 401 the client would take for a bad key, and is not cached."""

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
