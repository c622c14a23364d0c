"""Verified JWTs remembered per snapshot, so a client reusing its token pays for one signature check.

A client sends the same bearer token for its whole lifetime; verifying an RS256 signature and
re-parsing the claims on every request is the largest cost of a JWT route. The exact token string
verified once verifies again with the same key, so the result is kept in a bounded LRU keyed by
that string (held in memory only, never logged) and reused while:

- the time claims still hold (``exp`` and ``nbf`` are re-checked on every hit, with the leeway);
- the snapshot is the same (any configuration change — a removed credential, a disabled consumer
  — starts an empty cache, as with API keys);
- for a JWKS credential, the key that verified it is still in the current key set (a refreshed
  document without it sends the token through full verification again, and refusal).

Envoy's ``jwt_authn`` keeps the same kind of cache. ``JWT_CACHE_SIZE = 0`` turns it off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..conf import gateway_settings
from ..config import Identity


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    identity: Identity
    exp: float | None
    nbf: float | None
    key: Any  # the public key object that verified it (JWKS credentials), else None
    kid: str | None

    def still_valid(self, now: float, leeway: float) -> bool:
        if self.exp is not None and now >= self.exp + leeway:
            return False
        return self.nbf is None or now >= self.nbf - leeway


class VerifiedTokens:
    """A thread-safe LRU of token → :class:`VerifiedToken`, sized by ``JWT_CACHE_SIZE``."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> VerifiedToken | None:
        entry = self._entries.get(token)
        if entry is not None:
            with self._lock:
                if token in self._entries:
                    self._entries.move_to_end(token)
        return entry

    def put(self, token: str, entry: VerifiedToken) -> None:
        size = gateway_settings.JWT_CACHE_SIZE
        if not size:
            return
        with self._lock:
            self._entries[token] = entry
            self._entries.move_to_end(token)
            while len(self._entries) > size:
                self._entries.popitem(last=False)

    def discard(self, token: str) -> None:
        with self._lock:
            self._entries.pop(token, None)

    def __len__(self) -> int:
        return len(self._entries)
