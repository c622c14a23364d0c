"""Per-service caps on requests in flight (``Service.max_concurrent_requests``), per process.

A slow dependency must not take every route down with it. Under the WSGI shell a request in
flight holds a worker thread, so a cap keeps one slow service from holding all of them; under the
ASGI shell it holds only sockets, and the cap bounds those and the upstream's load. A request
counts from the moment the forwarder takes it until its response is finished (sent, or abandoned
by the client), retries included; past the cap it gets 503 with ``Retry-After`` at once, without
contacting the service. Counts are per process, like the connection pools (DESIGN §5).
"""

from __future__ import annotations

import threading


class ServiceGates:
    """In-flight counts by service name; only services with a cap are counted at all."""

    def __init__(self) -> None:
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, service: str, cap: int) -> bool:
        """Count one more request for ``service``; ``False`` (nothing counted) at its cap."""
        with self._lock:
            count = self._in_flight.get(service, 0)
            if count >= cap:
                return False
            self._in_flight[service] = count + 1
            return True

    def leave(self, service: str) -> None:
        with self._lock:
            count = self._in_flight.get(service, 0) - 1
            if count > 0:
                self._in_flight[service] = count
            else:
                self._in_flight.pop(service, None)

    def in_flight(self, service: str) -> int:
        return self._in_flight.get(service, 0)

    def reset(self) -> None:
        with self._lock:
            self._in_flight.clear()
