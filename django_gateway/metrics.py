"""Per-process event counters, for what must be counted rather than only logged.

A counter is a name and an integer, kept in this process only (each gunicorn worker has its own;
add them up across workers when you export them). ``counters.snapshot()`` returns a copy for a
metrics exporter or a health page. Names in use are listed in ``docs/rate-limiting.md``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter


class Counters:
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def increment(self, name: str, amount: int = 1) -> int:
        with self._lock:
            self._counts[name] += amount
            return self._counts[name]

    def get(self, name: str) -> int:
        return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


class OutageWarnings:
    """At most one warning per ``every`` seconds: an outage must not turn into a log flood."""

    clock = staticmethod(time.monotonic)

    def __init__(
        self, every: float = 10.0, logger_name: str = "django_gateway.throttling.stage"
    ) -> None:
        self.every = every
        self._logger = logging.getLogger(logger_name)
        self.reset()

    def reset(self) -> None:
        self._last = -self.every

    def warn(self, message: str) -> None:
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            self._logger.warning(message)
