"""One background thread per watched Consul query, following Consul's blocking-query rules.

A :class:`Watcher` runs ``GET /v1/health/service/<name>`` through py-consul in a loop and
publishes each answer as an immutable :class:`Known` that request threads read without a lock.
The loop follows CONSUL_FACTS §1.7 (Consul's "blocking queries" page):

1. **Index goes backwards → reset to 0.** A returned ``X-Consul-Index`` lower than the one sent
   (snapshot restore, upgrade) restarts the loop with a non-blocking query; the answer itself is
   current data and is used.
2. **Index at least 1.** Any other index below 1 (0, missing, unparsable) is replaced by 1, which
   always blocks, so a buggy index can never turn the loop into a busy loop.
3. **Rate limit.** A token bucket of burst 2 refilled every ``CONSUL_MIN_QUERY_INTERVAL``
   seconds: a change or two is seen at once, a churning service is re-read at that rate.

``wait`` is ``CONSUL_WAIT`` (Consul defaults to 5 min and caps at 10; a shorter wait notices a
silently dropped connection sooner and stays under the idle timeouts of middleboxes). The HTTP
timeout is ``CONSUL_TIMEOUT`` plus the wait and its 1/16 jitter (py-consul adds those).

On any error (connection, timeout, ACL 403, 5xx, garbage) the published instances are kept, the
error is recorded, and the next try comes after an exponential back-off with jitter between
``CONSUL_BACKOFF_MIN`` and ``CONSUL_BACKOFF_MAX``; that try uses index 0, so a recovered Consul
is believed at once instead of after a full wait. Failures are counted (``consul.errors``) and
logged once per change of state (healthy → failing, failing → healthy), not once per try.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import consul

from ..conf import gateway_settings
from ..config import Instance
from ..metrics import Counters
from .client import consul_client, explain_error
from .consul import parse_entries

logger = logging.getLogger(__name__)

BURST = 2  # token bucket size (§1.7 rule 3)


@dataclass(frozen=True, slots=True)
class WatchKey:
    """What one watcher asks Consul; services sharing all four share the watcher."""

    service: str
    tags: tuple[str, ...] = ()
    datacenter: str = ""  # "" → CONSUL_DATACENTER, else the agent's own
    include_warning: bool = False


@dataclass(frozen=True, slots=True)
class Known:
    """The latest published state of a watcher (replaced whole, never mutated)."""

    instances: tuple[Instance, ...] = ()
    index: int = 0  # the X-Consul-Index of the last good answer
    fetched: bool = False  # at least one good answer so far
    updated_at: float | None = None  # wall clock of the last good answer
    updated_monotonic: float = 0.0
    error: str = ""  # why the last try failed; "" when it did not


def next_index(previous: int, raw: Any) -> tuple[int, bool]:
    """The index to send next, and whether the loop was reset (rules 1 and 2)."""
    try:
        index = int(raw)
    except (TypeError, ValueError):
        index = 0
    if index < previous:
        return 0, True
    return max(index, 1), False


def backoff(failures: int) -> float:
    """Seconds before try ``failures + 1``: doubling from the minimum, capped, half jittered."""
    low = float(gateway_settings.CONSUL_BACKOFF_MIN)
    high = max(float(gateway_settings.CONSUL_BACKOFF_MAX), low)
    delay = min(high, low * 2.0 ** min(failures - 1, 30))
    return delay / 2 + random.uniform(0, delay / 2)


class TokenBucket:
    """§1.7 rule 3: ``burst`` queries at once, then one per ``interval`` seconds."""

    def __init__(self, burst: int = BURST) -> None:
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def delay(self, interval: float) -> float:
        """Take a token; the seconds to wait before using it (0 when one was there)."""
        now = time.monotonic()
        if interval <= 0:
            return 0.0
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) / interval) - 1
        self.stamp = now
        return 0.0 if self.tokens >= 0 else -self.tokens * interval


def follow(
    query: Callable[[int, str], tuple[Any, Any]],
    *,
    stop: threading.Event,
    on_answer: Callable[[Any, Any], None],
    on_error: Callable[[Exception, int], None],
    what: str,
    counters: Counters,
    keep_going: Callable[[], bool] = lambda: True,
) -> None:
    """Blocking queries by the rules above until ``stop`` is set or ``keep_going()`` is false.

    ``query(index, wait)`` asks Consul and returns ``(raw X-Consul-Index, data)``; each answer
    goes to ``on_answer(raw_index, data)``, each failure to ``on_error(exc, failures in a row)``
    before the back-off. The instance watchers and ``gateway_sync_services --watch`` both run
    this loop, so they follow the same rules.
    """
    index, failures = 0, 0
    bucket = TokenBucket()
    while not stop.is_set() and keep_going():
        wait_ms = max(1, round(float(gateway_settings.CONSUL_WAIT) * 1000))
        try:
            raw_index, data = query(index, f"{wait_ms}ms")
        except Exception as exc:
            if stop.is_set():
                return
            failures += 1
            index = 0
            on_error(exc, failures)
            stop.wait(backoff(failures))
            continue
        if stop.is_set():
            return
        failures = 0
        index, reset = next_index(index, raw_index)
        if reset:
            counters.increment("consul.index_resets")
            logger.info("Consul index for %s went backwards; restarting", what)
        on_answer(raw_index, data)
        stop.wait(bucket.delay(float(gateway_settings.CONSUL_MIN_QUERY_INTERVAL)))


class Watcher:
    """Keeps :attr:`known` current for one :class:`WatchKey` from a daemon thread.

    ``retire`` is asked when nobody has read this watcher for ``idle_after`` seconds; when it
    agrees the thread ends (the next read starts a new watcher).
    """

    def __init__(
        self,
        key: WatchKey,
        retire: Callable[[Watcher], bool],
        idle_after: float,
        counters: Counters,
    ) -> None:
        self.key = key
        self.counters = counters
        self.created = self.last_used = time.monotonic()
        self.known = Known()
        self.first_outcome = threading.Event()  # set by the first answer or failure
        self.retired = False
        self._dropped: tuple[str, ...] = ()  # last logged, so each change is logged once
        self._retire = retire
        self._idle_after = idle_after
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"django-gateway-consul:{key.service}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it does at once unless a query is in flight (then when the
        query returns, at most ``CONSUL_WAIT`` later), and publishes nothing more."""
        self.retired = True
        self._stopping.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        clients: list[consul.Consul] = []
        try:
            self._loop(clients)
        except Exception:  # a bug, not Consul: never leave a dead watcher in place
            logger.exception("The Consul watcher for %s failed", self.key.service)
        finally:
            self.retired = True  # the next read starts a new watcher
            for client in clients:  # its keep-alive connection, now rather than at GC
                client.http.session.close()

    def _loop(self, clients: list[consul.Consul]) -> None:
        def query(index: int, wait: str) -> tuple[Any, Any]:
            if not clients:
                clients.append(consul_client())
            raw_index, entries = self._query(clients[0], index, wait)
            if not isinstance(entries, list):
                raise ValueError(f"Consul answered {type(entries).__name__}, not a list")
            return raw_index, entries

        def keep_going() -> bool:
            idle = time.monotonic() - self.last_used > self._idle_after
            return not (idle and self._retire(self))

        follow(
            query,
            stop=self._stopping,
            on_answer=self._succeeded,
            on_error=self._failed,
            what=self.key.service,
            counters=self.counters,
            keep_going=keep_going,
        )

    def _query(self, client: consul.Consul, index: int, wait: str) -> tuple[Any, Any]:
        key = self.key
        # (X-Consul-Index, entries): unpacked because py-consul leaves the return type open.
        raw_index, entries = client.health.service(
            key.service,
            index=index or None,
            wait=wait,
            passing=None if key.include_warning else True,
            tag=list(key.tags) or None,
            dc=key.datacenter or None,
        )
        return raw_index, entries

    def _succeeded(self, raw_index: Any, entries: list[Any]) -> None:
        parsed = parse_entries(entries, include_warning=self.key.include_warning)
        previous = self.known
        if parsed.dropped and parsed.dropped != self._dropped:
            logger.warning(
                "Consul instances of %s not routed: %s", self.key.service, "; ".join(parsed.dropped)
            )
        self._dropped = parsed.dropped
        if previous.error:
            logger.info("Consul answers again for %s", self.key.service)
        instances = parsed.instances
        if instances == previous.instances:
            instances = previous.instances  # the same object: balancers keep their position
        try:
            index = int(raw_index)
        except (TypeError, ValueError):
            index = 0
        self.known = Known(
            instances=instances,
            index=index,
            fetched=True,
            updated_at=time.time(),
            updated_monotonic=time.monotonic(),
        )
        self.first_outcome.set()

    def _failed(self, exc: Exception, failures: int) -> None:
        self.counters.increment("consul.errors")
        error = explain_error(exc)
        if not self.known.error:
            logger.warning(
                "Consul query for %s failed (%s); %s",
                self.key.service,
                error,
                f"serving the last-known instances for up to {gateway_settings.CONSUL_MAX_STALE}s"
                if self.known.fetched
                else "no instances known yet",
            )
        logger.debug(
            "Consul query for %s failed (try %d)", self.key.service, failures, exc_info=True
        )
        self.known = replace(self.known, error=error)
        self.first_outcome.set()
