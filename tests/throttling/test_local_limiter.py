"""The algorithm, case by case, against both engines; then what only the in-process one has.

Every case in the first part runs against :class:`LocalLimiter` and against the Lua script in a
real Redis (the ``limiter`` fixture), with an injected clock so the times are exact. The
randomised cross-check then drives both engines through the same long mixed sequence and
requires identical decisions: the local engine is the script's reference implementation.
"""

from __future__ import annotations

import bisect
import random
import threading

import pytest

from django_gateway.throttling import LimitSpec, LocalLimiter, RedisLimiter

from .conftest import T0


@pytest.fixture
def ns(request: pytest.FixtureRequest, limiter) -> str:
    """Key names of this test's own: under the run's prefix when the engine is Redis."""
    if isinstance(limiter, RedisLimiter):
        return request.getfixturevalue("prefix")
    return "local:"


def spec(ns: str, name: str, limit: int, period: int = 60) -> LimitSpec:
    return LimitSpec(f"{ns}{name}", limit, period)


def test_admits_the_limit_then_denies_counting_remaining_down(limiter, ns):
    a = [spec(ns, "a", 3)]
    decisions = [limiter.hit(a, now_ms=T0 + i) for i in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.statuses[0].remaining for d in decisions] == [2, 1, 0, 0]
    assert [d.retry_after for d in decisions[:3]] == [0, 0, 0]
    assert decisions[0].statuses[0].spec == a[0]


def test_reset_and_retry_after_are_exact(limiter, ns):
    a = [spec(ns, "a", 3)]  # w = 1000 ms
    assert limiter.hit(a, now_ms=T0).statuses[0].reset == 61.0  # bucket 0 counts until T0+61 s
    assert limiter.hit(a, now_ms=T0 + 250).statuses[0].reset == 60.75
    assert limiter.hit(a, now_ms=T0 + 1500).statuses[0].reset == 59.5
    denied = limiter.hit(a, now_ms=T0 + 2000)
    assert not denied.allowed
    assert denied.retry_after == 59.0 and denied.statuses[0].reset == 59.0
    last_moment = limiter.hit(a, now_ms=T0 + 60_999)
    assert not last_moment.allowed and last_moment.retry_after == 0.001
    after = limiter.hit(a, now_ms=T0 + 61_000)  # bucket 0 (two requests) has left
    assert after.allowed
    assert after.statuses[0].remaining == 1 and after.statuses[0].reset == 1.0


def test_retry_after_waits_for_as_many_buckets_as_the_request_needs(limiter, ns):
    a = [spec(ns, "a", 4)]
    for t in (0, 1000, 2000, 2500):
        assert limiter.hit(a, now_ms=T0 + t).allowed
    # Buckets 0 and 1 hold one each, bucket 2 holds two: a cost of 3 must wait for bucket 2.
    denied = limiter.hit(a, cost=3, now_ms=T0 + 3000)
    assert not denied.allowed and denied.retry_after == 60.0
    assert limiter.hit(a, cost=1, now_ms=T0 + 3000).retry_after == 58.0  # bucket 0 is enough
    assert limiter.hit(a, cost=3, now_ms=T0 + 63_000).allowed


def test_retry_after_is_the_longest_wait_among_the_denying_limits(limiter, ns):
    minute, hour, roomy = spec(ns, "m", 1), spec(ns, "h", 1, 3600), spec(ns, "r", 100)
    assert limiter.hit([minute, hour, roomy], now_ms=T0).allowed
    denied = limiter.hit([minute, hour, roomy], now_ms=T0 + 1000)
    assert not denied.allowed
    assert denied.retry_after == 3659.0  # the hour's bucket (w = 60 s) leaves at T0+3660 s
    assert [s.remaining for s in denied.statuses] == [0, 0, 99]
    assert limiter.hit([minute, roomy], now_ms=T0 + 1000).retry_after == 60.0


def test_a_denied_request_counts_in_no_limit(limiter, ns):
    roomy, tight = spec(ns, "roomy", 5), spec(ns, "tight", 2, 3600)
    assert [limiter.hit([roomy, tight], now_ms=T0 + i).allowed for i in range(4)] == [
        True,
        True,
        False,
        False,
    ]
    assert limiter.peek([roomy], now_ms=T0 + 10).statuses[0].remaining == 3
    assert limiter.hit([roomy], cost=3, now_ms=T0 + 10).allowed


def test_costs_count_whole_and_a_cost_above_the_limit_never_fits(limiter, ns):
    a = [spec(ns, "a", 5)]
    assert limiter.hit(a, cost=2, now_ms=T0).statuses[0].remaining == 3
    assert not limiter.hit(a, cost=4, now_ms=T0 + 1).allowed
    assert limiter.hit(a, cost=3, now_ms=T0 + 2).statuses[0].remaining == 0
    too_big = limiter.hit([spec(ns, "b", 5)], cost=6, now_ms=T0)
    assert not too_big.allowed and too_big.retry_after == 60.0


def test_peek_decides_for_one_more_request_and_counts_nothing(limiter, ns):
    a = [spec(ns, "a", 2)]
    fresh = limiter.peek(a, now_ms=T0)
    assert fresh.allowed and fresh.statuses[0].remaining == 2 and fresh.statuses[0].reset == 60.0
    limiter.hit(a, now_ms=T0)
    assert limiter.peek(a, now_ms=T0 + 1).statuses[0].remaining == 1
    limiter.hit(a, now_ms=T0 + 2)
    full = limiter.peek(a, now_ms=T0 + 3)
    assert not full.allowed and full.retry_after == limiter.hit(a, now_ms=T0 + 3).retry_after


def test_a_zero_limit_denies_everything(limiter, ns):
    decision = limiter.hit([spec(ns, "zero", 0)], now_ms=T0)
    assert not decision.allowed and decision.retry_after == 60.0


def test_reset_forgets_the_counts(limiter, ns):
    a, b = spec(ns, "a", 1), spec(ns, "b", 1)
    limiter.hit([a, b], now_ms=T0)
    assert not limiter.hit([a], now_ms=T0 + 1).allowed
    assert limiter.reset([a.key, b.key, f"{ns}never"]) == 2
    assert limiter.hit([a], now_ms=T0 + 2).allowed
    assert limiter.reset([]) == 0


def test_a_window_cut_for_another_period_starts_afresh(limiter, ns):
    assert limiter.hit([spec(ns, "a", 1, 60)], now_ms=T0).allowed
    assert limiter.hit([spec(ns, "a", 1, 120)], now_ms=T0 + 1).allowed  # w 1 s -> 2 s


def test_bad_arguments_are_refused(limiter, ns):
    a = spec(ns, "a", 1)
    with pytest.raises(ValueError, match="own key"):
        limiter.hit([a, LimitSpec(a.key, 5, 3600)])
    with pytest.raises(ValueError, match="cost"):
        limiter.hit([a], cost=-1)
    with pytest.raises(ValueError):
        LimitSpec("k", 1, 0)
    with pytest.raises(ValueError):
        LimitSpec("k", -1, 60)


def test_no_span_of_a_period_ever_holds_more_than_the_limit(limiter, ns):
    """A client retrying every 7 ms for 200 s against 100/min, from a time off the bucket grid."""
    a = [spec(ns, "a", 100)]
    start, end = T0 + 123, T0 + 123 + 200_000
    admitted = [t for t in range(start, end, 7) if limiter.hit(a, now_ms=t).allowed]
    # Brute force over the admissions: the closed span [t, t + 60 s] from each one.
    worst = max(bisect.bisect_right(admitted, t + 60_000) - i for i, t in enumerate(admitted))
    assert worst == 100
    # And it does not fall far below the limit: any 61 s once steady holds nearly 100.
    steady = [t for t in admitted if start + 61_000 <= t <= end - 61_000]
    fewest = min(
        bisect.bisect_right(admitted, t + 61_000) - bisect.bisect_right(admitted, t) for t in steady
    )
    assert fewest >= 95
    assert len(admitted) >= 390  # an exact log admits 400 here


# What only the in-process engine has.


def test_the_local_engine_agrees_with_the_script_over_a_long_random_run(redis_limiter, prefix):
    rng = random.Random(20240607)
    local = LocalLimiter()
    now = T0 + 777
    names = ["a", "b", "c"]
    for step in range(3000):
        now += rng.choice([0, 1, 17, 250, 999, 1000, 4000, 30_000])
        chosen = rng.sample(names, rng.randint(1, 3))
        specs = [
            LimitSpec(f"{prefix}{n}", rng.choice([3, 5]), rng.choice([60, 60, 60, 61]))
            for n in chosen
        ]
        if step % 400 == 399:
            keys = [f"{prefix}{n}" for n in names]
            assert local.reset(keys) == redis_limiter.reset(keys)
        elif rng.random() < 0.1:
            assert local.peek(specs, now_ms=now) == redis_limiter.peek(specs, now_ms=now), step
        else:
            cost = rng.choice([1, 1, 1, 2, 4])
            expected = redis_limiter.hit(specs, cost=cost, now_ms=now)
            assert local.hit(specs, cost=cost, now_ms=now) == expected, step


def test_threads_share_one_local_engine_exactly():
    limiter, a = LocalLimiter(), [LimitSpec("k", 50, 60)]
    admitted: list[bool] = []

    def client() -> None:
        admitted.extend(limiter.hit(a, now_ms=T0).allowed for _ in range(40))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 50


def test_expired_keys_are_swept_from_memory():
    limiter = LocalLimiter()
    for i in range(100):
        limiter.hit([LimitSpec(f"client-{i}", 10, 60)], now_ms=T0)
    limiter.hit([LimitSpec("late", 10, 60)], now_ms=T0 + 61_000)  # the others expired at +61 s
    assert limiter.reset([f"client-{i}" for i in range(100)]) == 0
    assert limiter.reset(["late"]) == 1


def test_the_clock_defaults_to_wall_time():
    limiter, a = LocalLimiter(), [LimitSpec("k", 1, 60)]
    assert limiter.hit(a).allowed
    denied = limiter.hit(a)
    assert not denied.allowed and 59.0 < denied.retry_after <= 61.0
