"""The rate-limit engine without Redis: the same algorithm in this process's memory.

It exists for development without a Redis and as a cross-check of :file:`script.lua` in the
tests: the same bucketed sliding window (see :mod:`.redis_limiter`), the same rules for a window
cut for another period, for expiry and for all-or-nothing counting, and the same flat reply. Its
counts are per process, so behind several workers each one admits the full limit: it is never an
option for production.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .base import BUCKETS, Decision, Limiter, LimitSpec, decision_from_reply, distinct_keys

#: How often (in ms of the limiter's clock) expired keys are swept from memory.
_SWEEP_INTERVAL_MS = 60_000


@dataclass(slots=True)
class _Stored:
    """What Redis keeps under one key: the bucket width, the buckets, and the key's expiry."""

    w: int
    counts: dict[int, int]
    expires: int


@dataclass(slots=True)
class _Window:
    """One limit as a request sees it: its still-counted buckets."""

    spec: LimitSpec
    period: int
    w: int
    live: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.live.values())

    def leaves(self, index: int, now: int) -> int:
        """Ms until bucket ``index`` stops counting."""
        return (index + 1) * self.w + self.period - now

    def wait(self, need: int, now: int) -> int:
        """Ms until enough has left the window, oldest bucket first, for ``need`` to fit."""
        left = self.total
        if need <= self.spec.limit:
            for index in sorted(self.live):
                left -= self.live[index]
                if left + need <= self.spec.limit:
                    return self.leaves(index, now)
        return self.period


class LocalLimiter(Limiter):
    def __init__(self) -> None:
        self._store: dict[str, _Stored] = {}
        self._next_sweep = 0
        self._lock = threading.Lock()

    def reset(self, keys: Sequence[str]) -> int:
        with self._lock:
            return sum(self._store.pop(key, None) is not None for key in set(keys))

    def _evaluate(self, specs: Sequence[LimitSpec], cost: int, now_ms: int | None) -> Decision:
        distinct_keys(specs)
        now = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            self._sweep(now)
            return decision_from_reply(specs, self._script(specs, cost, now))

    def _script(self, specs: Sequence[LimitSpec], cost: int, now: int) -> list[int]:
        need = max(cost, 1)
        windows = [self._load(spec, now) for spec in specs]
        denying = [win for win in windows if win.total + need > win.spec.limit]
        reply = [0 if denying else 1, max((win.wait(need, now) for win in denying), default=0)]
        for win in windows:
            if cost > 0:
                self._save(win, cost if not denying else 0, now)
            oldest = min(win.live, default=None)
            reset = win.period if oldest is None else win.leaves(oldest, now)
            reply += (max(win.spec.limit - win.total, 0), reset)
        return reply

    def _load(self, spec: LimitSpec, now: int) -> _Window:
        period = spec.period * 1000
        w = max(1, period // BUCKETS)
        first = (now - period) // w  # the oldest bucket that counts, whole
        stored = self._store.get(spec.key)
        live: dict[int, int] = {}
        if stored is not None and stored.expires > now and stored.w == w:
            live = {index: count for index, count in stored.counts.items() if index >= first}
        return _Window(spec, period, w, live)

    def _save(self, win: _Window, cost: int, now: int) -> None:
        """Keep what the script keeps: the counted buckets, plus this request's when admitted."""
        key = win.spec.key
        stored = self._store.get(key)
        if stored is None or stored.w != win.w or stored.expires <= now:
            stored = _Stored(win.w, {}, now)
        if cost:
            current = now // win.w
            if current not in win.live:  # a new bucket: the key lives until it stops counting
                stored.expires = now + win.period + win.w
            win.live[current] = win.live.get(current, 0) + cost
        stored.counts = win.live
        if win.live:
            self._store[key] = stored
        else:
            self._store.pop(key, None)

    def _sweep(self, now: int) -> None:
        """Drop expired keys now and then, so one-off keys (per address, say) do not pile up."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_INTERVAL_MS
        for key in [key for key, stored in self._store.items() if stored.expires <= now]:
            del self._store[key]
