"""The per-process cache of Consul-discovered instances, and what a request makes of it.

Each process keeps one :class:`~.watcher.Watcher` per distinct query (service, tags,
datacenter, include-warning), started by the first request that needs it. A request never waits
on Consul except during that watcher's cold start: the first requests wait up to
``CONSUL_COLD_START_TIMEOUT`` for its first answer (or failure); afterwards every request only
reads the published state.

What a request gets (DESIGN §4, "Consul unreachable"):

* Consul answered and lists healthy instances → those instances.
* Consul answered with none (or none routable) → 503 at once: Consul is believed.
* Consul fails → the last good answer is served for ``CONSUL_MAX_STALE`` seconds after it was
  received, then 503. Without any good answer yet → 503.

The cache is per process (DESIGN §5): each gunicorn worker watches for itself. After a fork the
child forgets the parent's watchers (threads do not survive a fork) and starts its own. A watcher
nobody has read for :data:`IDLE_AFTER` seconds stops; the next read starts it again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ..conf import gateway_settings
from ..config import Instance, ServiceConfig
from ..exceptions import ServiceUnavailable
from ..metrics import Counters
from ..offloop import must_not_block
from .watcher import Known, Watcher, WatchKey

#: Seconds without a read after which a watcher stops (a service removed from the configuration
#: or no longer routed should not be watched forever).
IDLE_AFTER = 900.0


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What this process knows about a Consul-discovered service (the admin's live panel).

    ``instances``: the instances requests are balanced over (the last good answer).
    ``index``: the ``X-Consul-Index`` of that answer (0 before the first one).
    ``updated_at``: wall-clock time (``time.time()``) of the last good answer, or ``None``.
    ``error``: why the latest query failed, ``""`` while Consul answers.
    ``stale``: Consul has been failing for longer than ``CONSUL_MAX_STALE`` since the last good
    answer, so requests get 503 instead of ``instances``.
    """

    instances: tuple[Instance, ...]
    index: int
    updated_at: float | None
    error: str
    stale: bool


def watch_key(service: ServiceConfig) -> WatchKey:
    return WatchKey(
        service=service.consul_service or service.name,
        tags=tuple(sorted(set(service.consul_tags))),
        datacenter=service.consul_datacenter,
        include_warning=service.consul_include_warning,
    )


class Watchers:
    """The process's watchers by :class:`~.watcher.WatchKey`."""

    def __init__(self, counters: Counters) -> None:
        # A forked child gets new Watchers from the runtime: it inherits no thread, so it must
        # not inherit their watchers either (nor a lock some other thread held at fork time).
        self.counters = counters
        self._watchers: dict[WatchKey, Watcher] = {}
        self._lock = threading.Lock()

    def get(self, key: WatchKey) -> Watcher:
        """The running watcher for ``key``, started now if there is none."""
        watcher = self._watchers.get(key)
        if watcher is None or watcher.retired:
            with self._lock:
                watcher = self._watchers.get(key)
                if watcher is None or watcher.retired:
                    watcher = self._watchers[key] = Watcher(
                        key, self._retire, IDLE_AFTER, self.counters
                    )
                    watcher.start()
        watcher.last_used = time.monotonic()
        return watcher

    def _retire(self, watcher: Watcher) -> bool:
        """Called by an idle watcher's thread: remove it unless a read came in meanwhile."""
        with self._lock:
            if time.monotonic() - watcher.last_used <= IDLE_AFTER:
                return False
            if self._watchers.get(watcher.key) is watcher:
                del self._watchers[watcher.key]
            watcher.retired = True
            return True

    def stop_all(self, timeout: float = 0.0) -> bool:
        """Stop every watcher; wait up to ``timeout`` seconds for their threads to end.
        True if all ended (a thread in the middle of a query ends when the query returns)."""
        with self._lock:
            watchers, self._watchers = list(self._watchers.values()), {}
        for watcher in watchers:
            watcher.stop()
        deadline = time.monotonic() + timeout
        return all(w.join(max(0.0, deadline - time.monotonic())) for w in watchers)

    def __len__(self) -> int:
        return len(self._watchers)


def _unavailable(detail: str) -> ServiceUnavailable:
    return ServiceUnavailable(detail, retry_after=gateway_settings.RETRY_AFTER_UNAVAILABLE)


def _expired(known: Known, now: float) -> bool:
    return bool(known.error) and now - known.updated_monotonic > gateway_settings.CONSUL_MAX_STALE


def consul_instances(service: ServiceConfig, watchers: Watchers) -> tuple[Instance, ...]:
    """The instances of a ``discovery="consul"`` service, or :class:`ServiceUnavailable`."""
    watcher = watchers.get(watch_key(service))
    known = watcher.known
    if not known.fetched and not known.error:  # cold start: the only wait, and a bounded one
        remaining = watcher.created + gateway_settings.CONSUL_COLD_START_TIMEOUT - time.monotonic()
        if remaining > 0:
            must_not_block("waiting for Consul's first answer")
            watcher.first_outcome.wait(remaining)
            known = watcher.known
    name = watcher.key.service
    # The client reads these; why Consul failed (its address, which setting chose it) is for
    # operators, in the log and the admin's live-instances panel, never in a response body.
    if not known.fetched:
        raise _unavailable(f"Consul did not answer for service {name!r} in time.")
    if _expired(known, time.monotonic()):
        raise _unavailable(
            f"Consul has been failing for service {name!r}; its last answer is older than "
            f"CONSUL_MAX_STALE ({gateway_settings.CONSUL_MAX_STALE}s)."
        )
    if not known.instances:
        raise _unavailable(f"Consul lists no healthy, routable instance of service {name!r}.")
    return known.instances


def describe(service: ServiceConfig, watchers: Watchers) -> ServiceState:
    """This process's view of a Consul-discovered service; starts watching it if nobody had
    (without waiting: a first look may show nothing yet)."""
    known = watchers.get(watch_key(service)).known
    return ServiceState(
        instances=known.instances,
        index=known.index,
        updated_at=known.updated_at,
        error=known.error,
        stale=known.fetched and _expired(known, time.monotonic()),
    )
