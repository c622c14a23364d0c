"""The async engine against the real Redis, on asyncio and on uvloop, on both of its paths.

It must be the sync engine on the event loop: the same decisions and stored window for the same
hits, one exact count when both serve one limit at once, and the same faults and breaker
(``test_redis_limiter.py``). What only the loop has is checked too: a black-holed Redis never
stops the loop, connections are never shared between loops, a cancelled call leaves nothing
half-read (``test_aio_engine.py`` has the engine the settings choose). Every test built on ``make``
runs on the auto-pipelined connection (:mod:`~django_gateway.throttling.aio_redis`) and on the
stream path it falls back to (a connection per call); the tests of what only one path does say so.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from django_gateway.throttling import (
    LimiterUnavailable,
    LimitSpec,
    RedisLimiter,
)
from django_gateway.throttling import aio_limiter as aio_module
from django_gateway.throttling import redis_limiter as sync_module
from django_gateway.throttling.base import Decision
from django_gateway.throttling.redis_limiter import SCRIPT_SHA

from .conftest import (
    PIPELINED,
    STREAMS,
    T0,
    FakeClock,
    free_port,
    make_pool,
)


def plain(decision: Decision) -> tuple[Any, ...]:
    """A decision without its keys, to compare two engines counting under different keys."""
    statuses = tuple((s.spec.limit, s.spec.period, s.remaining, s.reset) for s in decision.statuses)
    return decision.allowed, decision.retry_after, statuses


# Same script, same answers.

#: (ms after T0, cost) against 3/minute and 5/hour: a peek, a denial by the minute, a cost of 2,
#: then denials by the hour while the minute has room (which it keeps: all or nothing).
SEQUENCE = [(0, 1), (10, 1), (1500, 0), (2000, 1), (2500, 1), (61_500, 2), (62_000, 1)]
SEQUENCE += [(125_000, 1), (125_500, 0)]


def test_the_same_decisions_and_window_as_the_sync_engine(
    run, make, redis_limiter, redis_client, prefix
):
    def specs(side: str) -> list[LimitSpec]:
        return [LimitSpec(f"{prefix}{side}:m", 3, 60), LimitSpec(f"{prefix}{side}:h", 5, 3600)]

    expected = [plain(redis_limiter.hit(specs("sync"), cost=c, now_ms=T0 + t)) for t, c in SEQUENCE]
    limiter = make()

    async def main() -> list[Decision]:
        return [await limiter.hit(specs("async"), cost=c, now_ms=T0 + t) for t, c in SEQUENCE]

    assert [plain(decision) for decision in run(main())] == expected
    assert [d[0] for d in expected] == [True, True, True, True, False, True, False, False, False]
    assert [d[2][0][2] for d in expected[-2:]] == [3, 3]  # the minute counted nothing
    assert expected[4][2][1][2] == expected[3][2][1][2] == 2  # nor the hour, denied by the minute
    for sync_spec, async_spec in zip(specs("sync"), specs("async"), strict=True):
        assert redis_client.hgetall(async_spec.key) == redis_client.hgetall(sync_spec.key)


def test_peek_counts_nothing_and_reset_forgets(run, make, redis_client, prefix):
    limiter = make()
    a = [LimitSpec(f"{prefix}a", 2, 60)]

    async def main() -> tuple[Any, ...]:
        peeked = await limiter.peek(a, now_ms=T0)
        exists = redis_client.exists(a[0].key)
        await limiter.hit(a, now_ms=T0)
        with pytest.raises(ValueError, match="cost"):
            await limiter.hit(a, cost=-1)
        return (
            peeked,
            exists,
            await limiter.reset([a[0].key, f"{prefix}none"]),
            await limiter.reset([]),
        )

    peeked, exists, removed, none = run(main())
    assert peeked.allowed and peeked.statuses[0].remaining == 2 and not exists
    assert (removed, none) == (1, 0)


def test_the_script_is_loaded_again_after_script_flush(run, make, redis_client, prefix):
    """Concurrent calls after the flush: on a pipe each ``NOSCRIPT`` answers its own command."""
    limiter = make()
    a = [LimitSpec(f"{prefix}a", 4, 60)]

    async def main() -> list[int]:
        await limiter.hit(a, now_ms=T0)
        redis_client.script_flush()
        decisions = await asyncio.gather(*(limiter.hit(a, now_ms=T0 + 1) for _ in range(3)))
        return sorted(decision.statuses[0].remaining for decision in decisions)

    assert run(main()) == [0, 1, 2]
    assert redis_client.script_exists(SCRIPT_SHA) == [True]


def test_works_without_hiredis_packing(run, make, prefix, monkeypatch):
    monkeypatch.setattr(sync_module, "_hiredis_pack", None)
    limiter = make()
    a = [LimitSpec(f"{prefix}a", 2, 60)]

    async def main() -> list[bool]:
        return [(await limiter.hit(a, now_ms=T0)).allowed for _ in range(3)]

    assert run(main()) == [True, True, False]


@PIPELINED
def test_without_hiredis_each_call_has_a_connection_of_its_own(run, make, prefix, monkeypatch):
    monkeypatch.setattr(sync_module, "_hiredis_pack", None)
    monkeypatch.setattr(aio_module, "PIPELINING", False)
    limiter = make()
    a = [LimitSpec(f"{prefix}a", 9, 60)]

    async def main() -> tuple[list[int], list[tuple[int, int]]]:
        decisions = await asyncio.gather(*(limiter.hit(a) for _ in range(3)))
        opened = [(s.opened, len(s.pipes)) for s in limiter._loops.values()]
        return sorted(decision.statuses[0].remaining for decision in decisions), opened

    assert run(main()) == ([6, 7, 8], [(3, 0)])
    assert not limiter.pipelined


# One limit, both shells at once.


def test_threads_and_tasks_on_one_key_admit_exactly_the_limit(run, make, redis_client, prefix):
    """8 threads of the sync engine and 40 tasks of the async one, 400 hits against 100."""
    a = [LimitSpec(f"{prefix}shared", 100, 60)]
    sync_limiter = RedisLimiter(make_pool(timeout=5.0))
    limiter = make(timeout=5.0)
    go = threading.Event()
    sync_admitted: list[bool] = []

    def thread() -> None:
        go.wait()
        sync_admitted.extend(sync_limiter.hit(a).allowed for _ in range(25))

    async def task() -> list[bool]:
        return [(await limiter.hit(a)).allowed for _ in range(5)]

    async def main() -> list[bool]:
        tasks = [asyncio.create_task(task()) for _ in range(40)]
        go.set()
        return [allowed for done in await asyncio.gather(*tasks) for allowed in done]

    threads = [threading.Thread(target=thread) for _ in range(8)]
    for started in threads:
        started.start()
    async_admitted = run(main())
    for started in threads:
        started.join()
    sync_limiter.pool.disconnect()
    assert len(sync_admitted) + len(async_admitted) == 400
    assert sync_admitted.count(True) + async_admitted.count(True) == 100
    assert int(redis_client.hget(a[0].key, "n")) == 100


@STREAMS
def test_concurrent_calls_use_their_own_connections_up_to_max_connections(run, make, prefix):
    limiter = make(max_connections=2)
    a = [LimitSpec(f"{prefix}a", 10, 60)]

    async def main() -> tuple[list[Any], bool]:
        first = await asyncio.gather(*(limiter.hit(a) for _ in range(5)), return_exceptions=True)
        return first, (await limiter.hit(a)).allowed  # a busy process is not a Redis failure

    outcomes, then = run(main())
    assert [isinstance(o, Decision) and o.allowed for o in outcomes[:2]] == [True, True]
    assert all(isinstance(o, LimiterUnavailable) for o in outcomes[2:])
    assert "No free Redis connection" in str(outcomes[2]) and then


def test_each_event_loop_gets_its_own_connections(make, proxy, prefix):
    limiter = make(proxy.port)
    a = [LimitSpec(f"{prefix}a", 10, 60)]

    async def hit_and_close() -> int:
        remaining = (await limiter.hit(a)).statuses[0].remaining
        await limiter.aclose()
        return remaining

    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(limiter.hit(a))
        asyncio.run(hit_and_close())  # another loop: the first loop's connection is not its own
        assert proxy.accepted == 2
        first.run_until_complete(limiter.hit(a))  # the first loop still has its own
        assert proxy.accepted == 2
        first.run_until_complete(limiter.aclose())
    finally:
        first.close()

    assert asyncio.run(hit_and_close()) == 6
    assert len(limiter._loops) == 1  # closed loops are forgotten
    assert [(s.opened, s.pipes) for s in limiter._loops.values()] == [(0, set())]  # aclose()


# The pipelined connection (the streams path has no equivalent).


def test_nothing_listening_fails_fast_then_the_breaker_answers(run, make):
    limiter = make(free_port(), timeout=0.1, retry_interval=5.0)
    limiter.clock = FakeClock()

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(LimiterUnavailable, match="unavailable"):
            await limiter.hit([LimitSpec("k", 1, 60)])
        with pytest.raises(LimiterUnavailable, match="recently"):
            await limiter.hit([LimitSpec("k", 1, 60)])
        return time.monotonic() - started

    assert run(main()) < 0.5


def test_a_black_hole_costs_one_timeout_while_the_loop_keeps_serving(run, make, proxy, prefix):
    limiter = make(proxy.port, timeout=0.1, retry_interval=5.0)
    limiter.clock = clock = FakeClock()
    a = [LimitSpec(f"{prefix}a", 1, 60)]
    proxy.mode = "blackhole"

    async def main() -> tuple[float, int, float]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        with pytest.raises(LimiterUnavailable, match="unavailable"):
            await limiter.hit(a)
        elapsed = time.monotonic() - started
        ticker.cancel()
        started = time.monotonic()
        for _ in range(100):
            with pytest.raises(LimiterUnavailable, match="recently"):
                await limiter.hit(a)
        return elapsed, ticks, time.monotonic() - started

    elapsed, ticks, fast = run(main())
    assert 0.09 <= elapsed < 0.5  # one deadline, no redis-py retries
    assert ticks >= 5  # the loop went on serving meanwhile
    assert fast < 0.05 and proxy.accepted == 1
    proxy.mode = "forward"
    clock.now += 5.1  # the interval has passed: try Redis again

    async def back() -> list[bool]:
        return [(await limiter.hit(a)).allowed for _ in range(2)]

    assert run(back()) == [True, False]


def test_concurrent_calls_into_a_black_hole_each_fail_at_their_own_deadline(run, make, proxy):
    limiter = make(proxy.port, timeout=0.1, retry_interval=0)
    proxy.mode = "blackhole"

    async def call(delay: float) -> tuple[Any, float]:
        await asyncio.sleep(delay)
        started = time.monotonic()
        try:
            outcome: Any = await limiter.hit([LimitSpec("k", 1, 60)])
        except LimiterUnavailable as exc:
            outcome = exc
        return outcome, time.monotonic() - started

    async def main() -> tuple[list[tuple[Any, float]], float]:
        started = time.monotonic()
        outcomes = await asyncio.gather(*(call(delay) for delay in (0, 0, 0, 0.03, 0.06)))
        return outcomes, time.monotonic() - started

    outcomes, elapsed = run(main())
    assert all(isinstance(o, LimiterUnavailable) and "no answer" in str(o) for o, _ in outcomes)
    assert all(0.09 <= took < 0.2 for _, took in outcomes)  # the later ones are not cut short
    assert elapsed < 0.4  # side by side, not one timeout after another


def test_the_deadline_never_cuts_a_call_that_answers_in_time(run, make, prefix):
    """One timer serves every call: it must leave the calls still inside their deadline alone."""
    limiter = make(timeout=0.05)
    a = [LimitSpec(f"{prefix}a", 1_000_000, 60)]

    async def main() -> int:
        done, until = 0, time.monotonic() + 0.4
        while time.monotonic() < until:
            await asyncio.gather(limiter.hit(a), limiter.hit(a))
            done += 2
        return done

    assert run(main()) > 20  # and no LimiterUnavailable
    assert all(not (s.deadlines or s.expired) for s in limiter._loops.values())


def test_a_zero_retry_interval_disables_the_breaker(run, make, proxy, prefix):
    limiter = make(proxy.port, timeout=0.1, retry_interval=0)
    proxy.mode = "blackhole"

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(LimiterUnavailable):
                await limiter.hit([LimitSpec(f"{prefix}a", 1, 60)])

    run(main())
    assert proxy.accepted == 2


def test_a_reply_that_is_not_a_decision_is_a_fault(run, make, proxy):
    limiter = make(proxy.port, timeout=0.2)
    proxy.mode = "nonsense"

    async def main() -> None:
        with pytest.raises(LimiterUnavailable, match="reply"):
            await limiter.hit([LimitSpec("k", 1, 60)])

    run(main())


def test_a_connection_redis_closed_while_idle_is_replaced_silently(run, make, proxy, prefix):
    limiter = make(proxy.port, timeout=0.2)
    a = [LimitSpec(f"{prefix}a", 3, 60)]

    async def main() -> int:
        await limiter.hit(a)
        proxy.stop()
        proxy.start()  # a restart between two requests
        await asyncio.sleep(0.05)  # the loop reads the end of the old connection
        return (await limiter.hit(a)).statuses[0].remaining

    assert run(main()) == 1


def test_a_cancelled_call_is_no_fault_and_leaves_nothing_half_read(run, make, proxy, prefix):
    limiter = make(proxy.port, timeout=2.0)
    a = [LimitSpec(f"{prefix}a", 3, 60)]

    async def main() -> int:
        await limiter.hit(a)  # a kept connection, then a Redis that stops answering
        proxy.mode = "blackhole"
        proxy.stop()
        proxy.start()
        await asyncio.sleep(0.05)  # the loop reads the end of the old connection
        call = asyncio.create_task(limiter.hit(a))
        await asyncio.sleep(0.05)
        call.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await call
        proxy.mode = "forward"
        return (await limiter.hit(a)).statuses[0].remaining  # no breaker, a fresh connection

    assert run(main()) == 1
    assert all(not (s.deadlines or s.expired) for s in limiter._loops.values())
