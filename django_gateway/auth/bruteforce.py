"""Brute-force protection: too many failed authentications from one address → 429.

Failures are counted in the gateway's shared cache (Redis in production), per client address, in
a window of ``AUTH_FAILURE_WINDOW`` seconds that starts at the first failure; only the address is
recorded, never the credential tried. The process whose count crosses ``AUTH_FAILURE_LIMIT`` blocks
the address for a window; another process learns of it from its own next failure from that address
(the shared count is already over), so a blocked address gets at most one more attempt per
process. Successful requests never touch the cache: the check is a local dictionary lookup.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from django.core.cache import caches

from ..conf import gateway_settings
from ..exceptions import TooManyRequests

logger = logging.getLogger(__name__)

_MAX_BLOCKED = 100_000  # addresses remembered per process; the oldest go first past this


class FailureCounter:
    clock = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, client_ip: str) -> None:
        """Raise 429 when ``client_ip`` is blocked in this process."""
        if not self._blocked:
            return
        until = self._blocked.get(client_ip)
        if until is None:
            return
        remaining = until - self.clock()
        if remaining > 0:
            raise TooManyRequests(
                "Too many failed authentication attempts from this address.",
                retry_after=math.ceil(remaining),
            )
        with self._lock:
            self._blocked.pop(client_ip, None)

    def record_failure(self, client_ip: str) -> None:
        limit = gateway_settings.AUTH_FAILURE_LIMIT
        if not limit:
            return
        window = gateway_settings.AUTH_FAILURE_WINDOW
        key = f"django_gateway:authfail:{client_ip}"
        try:
            cache = caches[gateway_settings.CACHE_ALIAS]
            count = 1 if cache.add(key, 1, timeout=window) else cache.incr(key)
        except ValueError:  # expired between add and incr: this failure starts a new window
            count = 1
        except Exception:
            logger.warning("Could not count a failed authentication", exc_info=True)
            return
        if count >= limit:
            with self._lock:
                if len(self._blocked) >= _MAX_BLOCKED:
                    self._blocked.pop(next(iter(self._blocked)))
                self._blocked[client_ip] = self.clock() + window

    def reset(self) -> None:
        with self._lock:
            self._blocked.clear()
