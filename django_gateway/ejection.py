"""Passive ejection: eject an instance after consecutive failures, re-admit it through one probe.

State is per process (DESIGN §5): each worker learns on its own which instances fail, the way
nginx's ``max_fails`` works. An ejected instance gets no traffic for ``EJECT_COOLDOWN`` seconds; then
exactly one request is let through as a probe (half-open). Its success re-admits the instance, its
failure ejects it for another cool-down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .conf import gateway_settings

InstanceKey = tuple[str, str, int]  # (service name, host, port)


@dataclass(slots=True)
class _State:
    failures: int = 0
    ejected_until: float = 0.0
    probing: bool = False


class Ejections:
    clock = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self._states: dict[InstanceKey, _State] = {}
        self._lock = threading.Lock()

    def available(self, key: InstanceKey) -> bool:
        """Could a request go to this instance now? Side-effect free, for the balancer's filter."""
        state = self._states.get(key)
        if state is None or not state.ejected_until:
            return True
        return not state.probing and self.clock() >= state.ejected_until

    def begin(self, key: InstanceKey) -> bool:
        """Claim the instance for one request; an instance past its cool-down takes one probe."""
        state = self._states.get(key)
        if state is None or not state.ejected_until:
            return True
        with self._lock:
            if state.probing or self.clock() < state.ejected_until:
                return False
            state.probing = True
            return True

    def retry_after(self, keys: list[InstanceKey]) -> int:
        """Seconds until the first of ``keys`` may be probed again (at least 1)."""
        now = self.clock()
        waits = [self._states[k].ejected_until - now for k in keys if k in self._states]
        return max(1, int(min(waits, default=1) + 0.999))

    def success(self, key: InstanceKey) -> None:
        state = self._states.get(key)
        if state is not None and (state.failures or state.ejected_until):
            with self._lock:
                state.failures = 0
                state.ejected_until = 0.0
                state.probing = False

    def failure(self, key: InstanceKey) -> None:
        with self._lock:
            state = self._states.setdefault(key, _State())
            state.failures += 1
            if state.probing or state.failures >= gateway_settings.EJECT_AFTER_FAILURES:
                state.ejected_until = self.clock() + gateway_settings.EJECT_COOLDOWN
                state.probing = False

    def release_probe(self, key: InstanceKey) -> None:
        """A probe request ended without a verdict (the client went away): let another one try."""
        state = self._states.get(key)
        if state is not None and state.probing:
            with self._lock:
                state.probing = False

    def is_ejected(self, key: InstanceKey) -> bool:
        state = self._states.get(key)
        return bool(state and state.ejected_until and self.clock() < state.ejected_until)

    def reset(self) -> None:
        with self._lock:
            self._states.clear()
