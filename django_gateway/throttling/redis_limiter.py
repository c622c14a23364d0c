"""The Redis rate-limit engine: every limit of a request in one atomic round trip.

**Algorithm: a bucketed sliding window that never over-admits.** Each limit's window of
``period`` is cut into :data:`~.base.BUCKETS` (60) buckets of width ``w = period // 60`` ms; one
Redis hash per key maps bucket index ``floor(now / w)`` to a count. A request at ``now`` counts
every bucket with index ``>= floor((now - period) / w)``, so the oldest, partly expired bucket
counts whole: no span of ``period`` ever holds more than ``limit`` admitted requests, even across
boundaries (a fixed window lets ``2 * limit`` through there), at the price of a slot freeing up
to ``w`` (1/60 of the period) later than an exact log would. A key holds about 60 fields whatever
the traffic, where a sorted-set log keeps one member per request.

:file:`script.lua` evaluates all the limits of one request together and is all-or-nothing: if any
limit is exhausted, none is counted (a request denied by the hourly limit does not use up the
minute's). It is called with ``EVALSHA`` (loaded on the first ``NOSCRIPT``) and reads the clock
from Redis ``TIME`` unless a test passes ``now_ms``. Beside the buckets each hash keeps ``w`` (a
window cut for another period is started afresh), ``n`` (the sum) and ``lo`` (the oldest
bucket), so a call costs three commands per limit however full the window is; the buckets are
read only when the oldest has expired, and expired ones are then deleted. A key lives until its
newest bucket stops counting (``period + w``).

**Faults.** The hot path speaks to a redis-py connection directly, without the client layer and
its retries (a third less client CPU than ``Redis.evalsha``): every error becomes
:class:`~.base.LimiterUnavailable` within one socket timeout. After a failure a breaker answers
:class:`~.base.LimiterUnavailable` at once for ``retry_interval`` seconds, so a black-holed Redis
costs one timeout per interval per process instead of one per request. The ASGI shell's engine
(:mod:`.aio_limiter`) shares the arguments, the decoding, the breaker and the pool parameters.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qsl, urlencode

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.connection import Connection, ConnectionInterface
from redis.exceptions import MaxConnectionsError, NoScriptError
from redis.retry import AbstractRetry, Retry
from redis.sentinel import SentinelConnectionPool
from redis.utils import HIREDIS_AVAILABLE

from ..offloop import must_not_block
from ..sockets import is_stale, set_kernel_timeouts
from .base import (
    Decision,
    Limiter,
    LimiterUnavailable,
    LimitSpec,
    decision_from_reply,
    distinct_keys,
)

SCRIPT = files(__package__).joinpath("script.lua").read_bytes()
SCRIPT_SHA = hashlib.sha1(SCRIPT).hexdigest()

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None = None
if HIREDIS_AVAILABLE:  # a version redis-py accepts, so its parser is hiredis too
    import hiredis

    _hiredis_pack = hiredis.pack_command

#: Connection settings that are ours to choose, not the cache's.
_OVERRIDDEN = frozenset(
    {"socket_timeout", "socket_connect_timeout", "retry", "retry_on_timeout", "retry_on_error"}
)


def script_args(specs: Sequence[LimitSpec], cost: int, now_ms: int | None) -> list[Any]:
    """The one ``EVALSHA`` that decides a request, for both the sync and the async engine."""
    distinct_keys(specs)
    args: list[Any] = ["EVALSHA", SCRIPT_SHA, len(specs)]
    args += [spec.key for spec in specs]
    args += (-1 if now_ms is None else now_ms, cost)
    for spec in specs:
        args += (spec.limit, spec.period * 1000)
    return args


def packed(args: Sequence[Any], pack_command: Callable[..., list[bytes]]) -> list[bytes]:
    """``args`` as RESP: hiredis packs directly in ~1 µs; the connection's ``pack_command``
    (redis-py's, the fallback without hiredis) adds ~2 µs of argument checks."""
    return [_hiredis_pack(tuple(args))] if _hiredis_pack else pack_command(*args)


class Breaker:
    """The fault policy of both Redis engines: after a failure, :class:`~.base.LimiterUnavailable`
    at once for ``retry_interval`` seconds (0 turns it off)."""

    clock = staticmethod(time.monotonic)  # for the breaker only; the limits use Redis time

    def __init__(self, retry_interval: float) -> None:
        self.retry_interval = retry_interval
        self._open_until = 0.0  # the breaker is open (fails fast) until this clock reading

    def _check_breaker(self) -> None:
        if self._open_until:
            if self.clock() < self._open_until:
                raise LimiterUnavailable("Redis failed recently; not trying again yet.")
            self._open_until = 0.0

    def _failed(self, exc: BaseException) -> LimiterUnavailable:
        if self.retry_interval > 0:
            self._open_until = self.clock() + self.retry_interval
        return LimiterUnavailable(f"Redis is unavailable: {exc}")


class RedisLimiter(Breaker, Limiter):
    """Limits in Redis, one ``EVALSHA`` per request.

    Connections come from ``pool`` but are kept between calls in the limiter's own stack: taking
    one from redis-py's pool and giving it back costs ~7 µs of bookkeeping per request, keeping it
    ~1.5 µs (the same readiness check the pool makes, which notices a Redis that closed it).
    """

    def __init__(self, pool: redis.ConnectionPool, *, retry_interval: float = 1.0) -> None:
        super().__init__(retry_interval)
        self.pool = pool
        self._idle: list[Connection] = []
        _limiters.add(self)  # a forked child drops the parent's sockets (_forget_connections)

    def reset(self, keys: Sequence[str]) -> int:
        return int(self._call(("DEL", *keys))) if keys else 0

    def _evaluate(self, specs: Sequence[LimitSpec], cost: int, now_ms: int | None) -> Decision:
        return decision_from_reply(specs, self._call(script_args(specs, cost, now_ms)))

    def _call(self, args: Sequence[Any]) -> Any:
        """Send one command and read its reply, loading the script once on ``NOSCRIPT``."""
        self._check_breaker()
        must_not_block("a Redis call")
        conn = self._acquire()
        try:
            _refresh(conn)
            try:
                reply = _roundtrip(conn, args)
            except NoScriptError:
                _roundtrip(conn, ("SCRIPT", "LOAD", SCRIPT))
                reply = _roundtrip(conn, args)
        except BaseException as exc:
            conn.disconnect()  # never keep a half-read connection
            self.pool.release(conn)
            if isinstance(exc, Exception):  # whatever redis-py raised, Redis failed us
                raise self._failed(exc) from exc
            raise
        self._idle.append(conn)
        return reply

    def _acquire(self) -> Connection:
        try:
            return self._idle.pop()
        except IndexError:
            pass
        try:
            conn = self.pool.get_connection()
        except MaxConnectionsError as exc:  # this process is busy; Redis may be fine
            raise LimiterUnavailable(f"No free Redis connection: {exc}") from exc
        except Exception as exc:  # refused, timed out, or a handshake redis-py could not parse
            raise self._failed(exc) from exc
        sock = _socket(conn)
        timeout = self.pool.connection_kwargs.get("socket_timeout")
        if sock is not None and not isinstance(sock, ssl.SSLSocket) and timeout:
            sock.settimeout(None)  # kernel timeouts: no poll() before every send and receive
            set_kernel_timeouts(sock, timeout)
        return conn


_limiters: weakref.WeakSet[RedisLimiter] = weakref.WeakSet()


def _forget_connections() -> None:
    """In a forked child the parent's sockets are not ours to use (nor to close)."""
    for limiter in list(_limiters):
        limiter._idle = []


os.register_at_fork(after_in_child=_forget_connections)


def _socket(conn: ConnectionInterface) -> socket.socket | None:
    """The connection's socket, ``None`` while disconnected.

    redis-py's ``Connection._sock``: there is no public way to reach the socket, and the two uses
    of a plain TCP one were measured against the public alternatives (client CPU per ``hit``
    against a local Redis, best of 40 rounds of 3,000, two runs; system calls counted by strace):

    * kernel timeouts (:meth:`RedisLimiter._acquire`) instead of redis-py's socket timeouts:
      3 system calls per hit instead of 5 with the hiredis parser (21.0 to 21.5 µs against
      22.1 to 22.6) and instead of 7 with the pure-Python parser (25.5 to 26.3 µs against
      31.7 to 32.2);
    * ``select()`` for idle staleness (:func:`_refresh`) instead of ``Connection.can_read()``:
      the same 1.3 µs with hiredis, but the pure-Python parser's ``can_read()`` puts the socket
      back into timeout mode, undoing the kernel timeouts (32.1 to 32.9 µs per hit, not 25.5
      to 26.3).
    """
    sock = getattr(conn, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _refresh(conn: ConnectionInterface) -> None:
    """Reconnect a kept connection that Redis closed while it was idle (a restart, a timeout)."""
    sock = _socket(conn)
    if sock is None:
        return  # disconnected: the next send connects again
    if not isinstance(sock, ssl.SSLSocket):
        stale = is_stale(sock)  # one select(), leaving the socket's timeout mode alone
    else:  # TLS may hold decrypted bytes above the socket, which select() cannot see
        try:
            stale = conn.can_read()  # True (or an error) when closed, or when data is left unread
        except redis.ConnectionError:
            stale = True
    if stale:
        conn.disconnect()


def _roundtrip(conn: ConnectionInterface, args: Sequence[Any]) -> Any:
    conn.send_packed_command(packed(args, conn.pack_command), check_health=False)
    return conn.read_response()


def pool_from_django_cache(
    alias: str, *, socket_timeout: float, connect_timeout: float
) -> redis.ConnectionPool:
    """A new pool to the Redis behind django-redis cache ``alias``, with our timeouts, no retries
    (see :func:`pool_kwargs_from_django_cache`)."""
    kwargs = pool_kwargs_from_django_cache(
        alias, socket_timeout=socket_timeout, connect_timeout=connect_timeout
    )
    return redis.ConnectionPool.from_url(**kwargs)


def pool_kwargs_from_django_cache(
    alias: str,
    *,
    socket_timeout: float | None,
    connect_timeout: float,
    retry_class: Callable[[NoBackoff, int], AbstractRetry[Exception]] = Retry,
) -> dict[str, Any]:
    """``from_url`` arguments for a new pool (sync or ``redis.asyncio``, whose ``Retry`` is
    ``retry_class``) to the Redis behind django-redis cache ``alias``, with our timeouts, no retries.

    The cache's own pool is left alone: its timeouts suit the cache, not the hot path, and
    redis-py's default retries would turn a black-holed Redis into seconds of stall per request.
    The new pool is made from the cache's settings the way django-redis makes its own (the
    first ``LOCATION``, the connection factory's ``make_connection_params`` for ``OPTIONS``,
    then ``CONNECTION_POOL_KWARGS``), not copied from the live pool: its ``connection_kwargs``
    also hold objects redis-py creates for that one pool, under names that change between
    releases.
    """
    from django.core.cache import InvalidCacheBackendError
    from django_redis import get_redis_connection
    from django_redis.pool import get_connection_factory

    try:
        source = get_redis_connection(alias).connection_pool
    except (InvalidCacheBackendError, NotImplementedError, AttributeError) as exc:
        raise ImproperlyConfigured(
            f"Rate limiting needs CACHES[{alias!r}] to be a django-redis cache "
            f"(django_redis.cache.RedisCache): {exc}"
        ) from exc
    if isinstance(source, SentinelConnectionPool):
        raise ImproperlyConfigured(
            f"Rate limiting cannot use CACHES[{alias!r}]: Redis Sentinel is not supported yet."
        )
    config: Mapping[str, Any] = settings.CACHES[alias]
    options: dict[str, Any] = config.get("OPTIONS", {})
    params = get_connection_factory(options).make_connection_params(
        _primary_url(config["LOCATION"])
    )
    kwargs = {**params, **options.get("CONNECTION_POOL_KWARGS", {})}
    # Ours go to the constructor rather than into the pool's connection_kwargs afterwards:
    # redis-py keeps the constructor's timeouts as the ones a maintenance notification restores.
    return {
        **{key: value for key, value in kwargs.items() if key not in _OVERRIDDEN},
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": retry_class(NoBackoff(), 0),
    }


def _primary_url(location: str | Sequence[str]) -> str:
    """The server django-redis writes to (the first of ``LOCATION``), without the query options
    that are ours: ``ConnectionPool.from_url`` lets the URL's query win over its arguments."""
    first = (location.split(",") if isinstance(location, str) else list(location))[0]
    # Cut the query off the text rather than rebuild the URL: urlunsplit would turn
    # unix:///run/redis.sock into unix:/run/redis.sock, which redis-py refuses.
    base, _, query = first.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = urlencode([(name, value) for name, value in pairs if name not in _OVERRIDDEN])
    return f"{base}?{kept}" if kept else base
