"""The per-process runtime: everything one gateway process keeps between requests, in one object.

A request's decisions are plain functions over the snapshot's values; what remembers anything from
one request to the next lives here, and only here (DESIGN §3, §5):

- ``snapshots``: the configuration snapshot and its poll;
- ``transport``, ``async_transport``: the upstream connection pools of each shell;
- ``ejections``: passive health (consecutive failures, cool-downs, probes);
- ``balancers``: the per-service balancers and their in-flight counts;
- ``gates``: requests in flight per capped service (``max_concurrent_requests``);
- ``watchers``: the Consul watchers and their last answers;
- ``limiter``, ``async_limiter``: the rate-limit engine (Redis, or per process), built from
  settings, for each shell;
- ``failures``: brute-force blocks; ``usage``: key uses waiting to be written;
- ``offload``: the ASGI shell's threads for blocking work;
- ``jwks``: fetched key sets; ``counters``: event counters; ``request_ids``: the id sequence;
- ``allowed_hosts_seen``: ``Host`` values Django already accepted.

It has one fork hook (a gunicorn worker starts with no inherited socket, thread, lock or id
sequence) and one :meth:`Runtime.reset` (the public test helper calls it). State built from
settings is dropped when settings change, so ``override_settings`` works.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.signals import setting_changed

from .auth.bruteforce import FailureCounter
from .auth.jwks import JWKSCache
from .auth.usage import UsageRecorder
from .balancing import Balancers
from .concurrency import ServiceGates
from .conf import gateway_settings
from .discovery.cache import Watchers
from .ejection import Ejections
from .metrics import Counters, OutageWarnings
from .proxy.aio_pool import AsyncConnectionPool
from .proxy.aio_transport import AsyncTransport
from .proxy.pool import ConnectionPool
from .proxy.transport import Transport
from .snapshot import SnapshotHolder
from .throttling.aio_limiter import AsyncLimiter
from .throttling.base import Limiter
from .throttling.engine import build_async_limiter, build_limiter

#: Settings whose change must drop what was built from them (the ALLOWED_HOSTS answers too).
_REBUILT_ON = {"GATEWAY", "CACHES", "ALLOWED_HOSTS", "USE_X_FORWARDED_HOST", "DEBUG"}
_ALLOWED_HOSTS_SEEN_LIMIT = 1024


class RequestIds:
    """32 hex digits: a random per-process prefix and a counter.

    Unique across processes and machines like a UUID, without a system call per request; the
    prefix is drawn again in every forked child so gunicorn workers never share a sequence.
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(int.from_bytes(os.urandom(8), "big"))

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFFFFFF:016x}"


class Runtime:
    def __init__(self) -> None:
        self.counters = Counters()
        self.snapshots = SnapshotHolder()
        self.ejections = Ejections()
        self.balancers = Balancers()
        self.gates = ServiceGates()
        self.failures = FailureCounter(lambda: self.limiter)
        self.jwks = JWKSCache()
        self.outage_warnings = OutageWarnings()
        self._fresh_process()
        os.register_at_fork(after_in_child=self._fresh_process)
        setting_changed.connect(self._settings_changed, dispatch_uid="django_gateway.runtime")

    def _fresh_process(self) -> None:
        """What a forked child must not inherit: sockets, threads, locks, the id sequence."""
        self._lock = threading.Lock()
        self._transport: Transport | None = None
        self._async_transport: AsyncTransport | None = None
        self._limiter: Limiter | None = None
        self._async_limiter: AsyncLimiter | None = None
        self._offload: ThreadPoolExecutor | None = None
        self.usage = UsageRecorder()
        self.watchers = Watchers(self.counters)
        self.request_ids = RequestIds()
        self.allowed_hosts_seen: set[tuple[Any, Any]] = set()

    @property
    def transport(self) -> Transport:
        """The upstream transport, created on first use (after gunicorn forks its workers)."""
        transport = self._transport
        if transport is None:
            with self._lock:
                if self._transport is None:
                    self._transport = Transport(
                        ConnectionPool(
                            gateway_settings.POOL_MAX_IDLE_PER_HOST,
                            gateway_settings.POOL_IDLE_TIMEOUT,
                        )
                    )
                transport = self._transport
        return transport

    @property
    def async_transport(self) -> AsyncTransport:
        """The ASGI shell's upstream transport: keep-alive pools per event loop, same settings."""
        transport = self._async_transport
        if transport is None:
            with self._lock:
                if self._async_transport is None:
                    self._async_transport = AsyncTransport(
                        AsyncConnectionPool(
                            gateway_settings.POOL_MAX_IDLE_PER_HOST,
                            gateway_settings.POOL_IDLE_TIMEOUT,
                        )
                    )
                transport = self._async_transport
        return transport

    @property
    def limiter(self) -> Limiter:
        """The rate-limit engine for the current settings, built on first use."""
        limiter = self._limiter
        if limiter is None:
            with self._lock:
                if self._limiter is None:
                    self._limiter = build_limiter()
                limiter = self._limiter
        return limiter

    @property
    def offload(self) -> ThreadPoolExecutor:
        """The threads the ASGI shell runs blocking work in (:mod:`django_gateway.offloop`):
        API-key lookups that miss, JWKS fetches, Consul cold starts, configuration polls."""
        executor = self._offload
        if executor is None:
            with self._lock:
                if self._offload is None:
                    self._offload = ThreadPoolExecutor(
                        gateway_settings.ASGI_OFFLOAD_THREADS, thread_name_prefix="gateway-offload"
                    )
                executor = self._offload
        return executor

    @property
    def async_limiter(self) -> AsyncLimiter:
        """The ASGI shell's rate-limit engine: the same engine, script and keys as
        :attr:`limiter`, so both shells count together exactly."""
        limiter = self._async_limiter
        if limiter is None:
            with self._lock:
                if self._async_limiter is None:
                    self._async_limiter = build_async_limiter()
                limiter = self._async_limiter
        return limiter

    def remember_allowed_host(self, key: tuple[Any, Any]) -> None:
        if len(self.allowed_hosts_seen) < _ALLOWED_HOSTS_SEEN_LIMIT:
            self.allowed_hosts_seen.add(key)

    def _drop_settings_state(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.pool.clear()
            self._transport = None
            if self._async_transport is not None:
                self._async_transport.pool.clear()
            self._async_transport = None
            self._limiter = None
            self._async_limiter = None
            self.allowed_hosts_seen = set()

    def _settings_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting in _REBUILT_ON:
            self._drop_settings_state()
        if setting == "GATEWAY":  # watchers hold a Consul client built from the settings
            self.watchers.stop_all()

    def reset(self, watcher_timeout: float = 2.0) -> bool:
        """Forget everything this process learnt (tests): the snapshot, ejections, balancer
        positions, pooled connections, brute-force blocks, queued key uses, fetched JWKS, the
        limiter and its breaker, the Consul watchers (their threads stopped) and the counters.
        Counts already in Redis stay. True if every watcher thread ended in time."""
        self.snapshots.invalidate()
        self.ejections.reset()
        self.balancers.reset()
        self.gates.reset()
        self.failures.reset()
        self.usage.reset()
        self.jwks.reset()
        self.outage_warnings.reset()
        self._drop_settings_state()
        stopped = self.watchers.stop_all(watcher_timeout)
        self.counters.clear()
        return stopped


runtime = Runtime()
