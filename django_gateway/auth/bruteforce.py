"""Brute-force protection: too many failed authentications from one address → 429.

Failures are counted by the rate-limit engine (:mod:`django_gateway.throttling`: Redis, or each
process's memory without it), one sliding window of ``AUTH_FAILURE_WINDOW`` seconds per client
address; only the address is recorded, never the credential tried. The process whose count
reaches ``AUTH_FAILURE_LIMIT`` blocks the address for a window; another process learns of it from
its own next failure from that address (the shared count is already over), so a blocked address
gets at most one more attempt per process. Successful requests never count anything: the check is
a local dictionary lookup.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from ..conf import gateway_settings
from ..exceptions import TooManyRequests
from ..throttling.base import Limiter, LimiterUnavailable, LimitSpec
from ..throttling.engine import client_part, key_prefix

logger = logging.getLogger(__name__)

_MAX_BLOCKED = 100_000  # addresses remembered per process; the oldest go first past this


def failure_key(client_ip: str) -> str:
    """The engine key counting ``client_ip``'s failures (IPv6 by /64, like the rate limits)."""
    return f"{key_prefix()}:authfail:{client_part(client_ip)}"


class FailureCounter:
    """``limiter`` gives the engine in use (the runtime's, rebuilt when settings change)."""

    clock = staticmethod(time.monotonic)

    def __init__(self, limiter: Callable[[], Limiter]) -> None:
        self._limiter = limiter
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
        window = max(1, math.ceil(gateway_settings.AUTH_FAILURE_WINDOW))
        try:
            decision = self._limiter().hit([LimitSpec(failure_key(client_ip), limit, window)])
        except LimiterUnavailable:
            logger.warning("Could not count a failed authentication", exc_info=True)
            return
        if not decision.allowed or decision.statuses[0].remaining == 0:
            with self._lock:
                if len(self._blocked) >= _MAX_BLOCKED:
                    self._blocked.pop(next(iter(self._blocked)))
                self._blocked[client_ip] = self.clock() + window

    def reset(self) -> None:
        with self._lock:
            self._blocked.clear()
