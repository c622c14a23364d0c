"""The rate-limit engines for the ASGI shell's event loop, behind one async interface.

:class:`AsyncRedisLimiter` is :class:`~.redis_limiter.RedisLimiter` on ``redis.asyncio``: the same
``EVALSHA`` with the same arguments (:func:`~.redis_limiter.script_args`), the same decoding, the
same ``NOSCRIPT`` recovery and the same :class:`~.redis_limiter.Breaker`, so the two shells count
in the same keys and may serve one limit side by side. Nothing it does blocks the loop: a Redis
that refuses, black-holes, answers nonsense or has no free connection left is
:class:`~.base.LimiterUnavailable` within ``timeout``, while the loop serves other requests.
:class:`InProcessLimiter` puts the engines that do no I/O (the in-process fallback, the
always-unavailable stand-in) behind the same interface, so the shell never asks which one it has.

The hot path's shape comes from measurements (client CPU per ``hit`` with two limits against a
local Redis under uvloop, best and median of interleaved rounds, on a loaded two-core machine).
Sequential calls, 20 rounds of 2,000, when each call had a connection to itself: 33/40 µs, against
24/27 µs for the sync engine, and

* 40/44 µs with an ``asyncio.timeout`` per call, hence **one timer for all calls** (:class:`_OnLoop`)
  that cancels a call at its deadline, as ``asyncio.timeout`` would, for a dictionary entry per call;
* 49/54 µs with redis-py's own socket timeouts, which wrap every send in ``asyncio.wait_for`` (a
  new task per command on Python 3.11) and bound each step rather than the call, hence a pool
  without ``socket_timeout`` (:func:`async_pool_from_django_cache`): the deadline covers
  connecting, the handshake, a script load and the round trip together;
* 48/53 µs taking and returning connections through ``ConnectionPool.get_connection``/``release``
  (an ``asyncio.Lock`` and metrics each way), hence the limiter's **own idle stack**, per loop;
* 76/86 µs through the ``redis.asyncio.Redis`` client, which would also bring its retries.

Under concurrency a connection per call still cost most of its time in redis.asyncio's streams
and in one loop wake-up per call, hence **one auto-pipelined connection per loop**
(:mod:`.aio_redis`), where the calls of a loop iteration share one write, one read and one
wake-up. Medians of 8 to 10 interleaved rounds: with 16 tasks hitting in a loop, 23 µs of client
CPU per hit through streams, 16 µs pipelined; with 16 tasks that each do ~150 µs of work, a hit
and a 0.5 ms wait, a hit adds 59 µs through streams, 34 µs pipelined, and 12% more rounds per
second. With hiredis (which redis-py prefers too) every call takes that path; the pool's
``max_connections`` then bounds the connections a loop keeps open: the one calls queue on, and
those retired after a call ran out of time, kept until the calls already on them have had
theirs. Without hiredis, or on a loop whose transports cannot change protocol, each call has a
connection to itself, at most ``max_connections`` per loop, beyond which a call is unavailable
at once, as in the sync engine.

redis.asyncio connections belong to the loop that opened them, so a second loop (tests make
several) opens its own; a closed loop's are forgotten when another loop first calls (their
sockets close as they are collected). A forked child gets a new limiter from the runtime's fork hook.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.exceptions import NoScriptError, ResponseError

from .aio_redis import PIPELINING, UNSENT, RedisPipe
from .base import (
    Decision,
    Limiter,
    LimiterUnavailable,
    LimitSpec,
    checked_cost,
    decision_from_reply,
)
from .redis_limiter import SCRIPT, Breaker, packed, pool_kwargs_from_django_cache, script_args


class AsyncLimiter(ABC):
    """:class:`~.base.Limiter` for the event loop: the same calls, awaited."""

    async def hit(
        self, specs: Sequence[LimitSpec], *, cost: int = 1, now_ms: int | None = None
    ) -> Decision:
        """Admit the request in every limit, or in none when any limit is exhausted."""
        return await self._evaluate(specs, checked_cost(cost), now_ms)

    async def peek(self, specs: Sequence[LimitSpec], *, now_ms: int | None = None) -> Decision:
        """What :meth:`hit` would decide for one more request, without counting anything."""
        return await self._evaluate(specs, 0, now_ms)

    @abstractmethod
    async def _evaluate(
        self, specs: Sequence[LimitSpec], cost: int, now_ms: int | None
    ) -> Decision: ...

    @abstractmethod
    async def reset(self, keys: Sequence[str]) -> int:
        """Forget the counts under ``keys``; return how many existed."""


class InProcessLimiter(AsyncLimiter):
    """A sync engine that does no I/O (memory, or always unavailable), called on the loop."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    async def _evaluate(
        self, specs: Sequence[LimitSpec], cost: int, now_ms: int | None
    ) -> Decision:
        return self.limiter.hit(specs, cost=cost, now_ms=now_ms)  # cost 0 decides as peek does

    async def reset(self, keys: Sequence[str]) -> int:
        return self.limiter.reset(keys)


class _OnLoop:
    """What the limiter keeps per event loop: its pipes (the ``pipe`` new calls queue on, and
    all that are still open), or on the stream path its connections (``opened`` in all, the
    ``idle`` ones between calls, LIFO), and the deadlines of the calls running on it.

    One timer serves all the calls: set for the earliest deadline, it cancels the calls past
    theirs when it fires and is set again while calls remain. Calls one after another then cost
    a dictionary entry each, and the timer fires about once per ``timeout``.
    """

    __slots__ = ("deadlines", "expired", "idle", "loop", "opened", "pipe", "pipes", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pipe: RedisPipe | None = None
        self.pipes: set[RedisPipe] = set()
        self.idle: list[AbstractConnection] = []
        self.opened = 0
        #: Running calls: their deadline, and how many cancellations their task had on entry.
        self.deadlines: dict[asyncio.Task[Any], tuple[float, int]] = {}
        self.expired: dict[asyncio.Task[Any], int] = {}  # cancelled by their deadline
        self.timer: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any], timeout: float) -> None:
        deadline = self.loop.time() + timeout
        self.deadlines[task] = (deadline, task.cancelling())
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self._expire)

    def unwatch(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task``'s deadline cancelled it; that cancellation is then withdrawn (as
        ``asyncio.timeout`` does), so one from elsewhere still propagates."""
        if self.deadlines.pop(task, None) is not None:
            return False
        cancelling = self.expired.pop(task, None)
        return cancelling is not None and task.uncancel() <= cancelling

    def _expire(self) -> None:
        now, self.timer = self.loop.time(), None
        for task, (deadline, cancelling) in list(self.deadlines.items()):
            if deadline <= now:
                del self.deadlines[task]
                self.expired[task] = cancelling
                task.cancel()
        if self.deadlines:
            earliest = min(deadline for deadline, _ in self.deadlines.values())
            self.timer = self.loop.call_at(earliest, self._expire)


class AsyncRedisLimiter(Breaker, AsyncLimiter):
    """Limits in Redis from the event loop, one ``EVALSHA`` per call, each call within
    ``timeout`` seconds. ``pool`` (see :func:`async_pool_from_django_cache`) makes connections
    and bounds their number per loop; the limiter keeps them."""

    def __init__(
        self,
        pool: redis.asyncio.ConnectionPool,
        *,
        timeout: float,
        retry_interval: float = 1.0,
    ) -> None:
        super().__init__(retry_interval)
        self.pool = pool
        self.timeout = timeout
        #: Calls share an auto-pipelined connection (:mod:`.aio_redis`), else each has its own.
        self.pipelined = PIPELINING
        self._loops: dict[asyncio.AbstractEventLoop, _OnLoop] = {}
        self._last: _OnLoop | None = None

    async def reset(self, keys: Sequence[str]) -> int:
        return int(await self._call(("DEL", *keys))) if keys else 0

    async def aclose(self) -> None:
        """Close the running loop's connections (a shutdown, the end of a test); calls still
        waiting on one fail."""
        here = self._on_loop()
        pipes, here.pipe = list(here.pipes), None
        for pipe in pipes:
            pipe.close("closed by the limiter")
            await pipe.wait_closed()
        idle, here.idle = here.idle, []
        here.opened -= len(idle)
        for conn in idle:
            await conn.disconnect()

    async def _evaluate(
        self, specs: Sequence[LimitSpec], cost: int, now_ms: int | None
    ) -> Decision:
        return decision_from_reply(specs, await self._call(script_args(specs, cost, now_ms)))

    async def _call(self, args: Sequence[Any]) -> Any:
        """Send one command and read its reply, loading the script once on ``NOSCRIPT``."""
        self._check_breaker()
        here = self._on_loop()
        task = asyncio.current_task(here.loop)  # with the loop: no second lookup of it
        if task is None:
            raise RuntimeError("AsyncRedisLimiter must be awaited in a task.")
        if self.pipelined:
            reply = await self._piped(here, task, args)
            if reply is not UNSENT:
                return reply
        return await self._streamed(here, task, args)

    async def _piped(self, here: _OnLoop, task: asyncio.Task[Any], args: Sequence[Any]) -> Any:
        pipe = here.pipe
        if pipe is None or not pipe.accepting:
            pipe = self._new_pipe(here)
        here.watch(task, self.timeout)
        try:
            reply = await pipe.call(args)
            if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
                _, reply = await asyncio.gather(pipe.call(_LOAD), pipe.call(args))
            if isinstance(reply, ResponseError):
                raise reply
        except BaseException as exc:
            if here.unwatch(task):  # Redis is slow or gone: no new call queues behind this one
                pipe.retire(self.timeout)
                raise self._timed_out() from exc
            if isinstance(exc, Exception):  # a lost connection, an error reply
                raise self._failed(exc) from exc
            pipe.forget()  # the caller went away; its reply will be read and dropped
            raise
        here.unwatch(task)
        return reply

    async def _streamed(self, here: _OnLoop, task: asyncio.Task[Any], args: Sequence[Any]) -> Any:
        conn = self._acquire(here)
        here.watch(task, self.timeout)
        try:
            await _refresh(conn)
            try:
                reply = await _roundtrip(conn, args)
            except NoScriptError:
                await _roundtrip(conn, _LOAD)
                reply = await _roundtrip(conn, args)
        except BaseException as exc:  # a cancelled task too: never keep a half-read connection
            expired = here.unwatch(task)
            await conn.disconnect(nowait=True)
            here.idle.append(conn)  # closed: the call that takes it next connects again
            if expired:
                raise self._timed_out() from exc
            if isinstance(exc, Exception):  # whatever redis-py raised
                raise self._failed(exc) from exc
            raise
        here.unwatch(task)
        here.idle.append(conn)
        return reply

    def _timed_out(self) -> LimiterUnavailable:
        return self._failed(TimeoutError(f"no answer in {self.timeout} s"))

    def _on_loop(self) -> _OnLoop:
        """The running loop's state (one attribute read when it is the last loop seen)."""
        loop = asyncio.get_running_loop()
        here = self._last
        if here is None or here.loop is not loop:
            here = self._loops.get(loop)
            if here is None:
                for old in [old for old in list(self._loops) if old.is_closed()]:
                    self._loops.pop(old, None)
                here = self._loops[loop] = _OnLoop(loop)
            self._last = here
        return here

    def _new_pipe(self, here: _OnLoop) -> RedisPipe:
        conn = self._connection(len(here.pipes))
        pipe = here.pipe = RedisPipe(here.loop, conn.pack_command, here.pipes.discard)
        here.pipes.add(pipe)
        pipe.opening = here.loop.create_task(self._open(here, pipe, conn))
        return pipe

    async def _open(self, here: _OnLoop, pipe: RedisPipe, conn: AbstractConnection) -> None:
        if not await pipe.open(conn):  # this loop's transports cannot be taken over
            self.pipelined = False
            here.opened += 1
            here.idle.append(conn)

    def _acquire(self, here: _OnLoop) -> AbstractConnection:
        if here.idle:
            return here.idle.pop()
        conn = self._connection(here.opened)
        here.opened += 1
        return conn

    def _connection(self, in_use: int) -> AbstractConnection:
        limit = self.pool.max_connections
        if in_use >= limit:  # this process is busy; Redis may be fine
            raise LimiterUnavailable(f"No free Redis connection: all {limit} are in use.")
        try:
            conn: AbstractConnection = self.pool.make_connection()
        except Exception as exc:  # connection options this redis-py refuses
            raise self._failed(exc) from exc
        return conn


_LOAD = ("SCRIPT", "LOAD", SCRIPT)


async def _refresh(conn: AbstractConnection) -> None:
    """Reconnect a kept connection that Redis closed while it was idle (a restart, a timeout):
    the loop has already seen its end, or bytes nobody asked for."""
    if conn.is_connected:
        try:
            stale = await conn.can_read()
        except redis.ConnectionError:  # closed or reset
            stale = True
        if stale:
            await conn.disconnect(nowait=True)


async def _roundtrip(conn: AbstractConnection, args: Sequence[Any]) -> Any:
    await conn.send_packed_command(packed(args, conn.pack_command), check_health=False)
    return await conn.read_response()


def async_pool_from_django_cache(
    alias: str, *, connect_timeout: float
) -> redis.asyncio.ConnectionPool:
    """A ``redis.asyncio`` pool to the Redis behind django-redis cache ``alias``, built from the
    same arguments as the sync engine's (:func:`~.redis_limiter.pool_kwargs_from_django_cache`)
    but without a socket timeout: :class:`AsyncRedisLimiter` bounds each call as a whole."""
    kwargs = pool_kwargs_from_django_cache(
        alias, socket_timeout=None, connect_timeout=connect_timeout, retry_class=AsyncRetry
    )
    # The cache names sync classes; redis.asyncio picks its own from the URL (hiredis if installed).
    for sync_class in ("parser_class", "connection_class"):
        kwargs.pop(sync_class, None)
    return redis.asyncio.ConnectionPool.from_url(**kwargs)
