"""What only the Redis engine has: the stored window, the script's life, real concurrency, faults.

The algorithm itself is specified case by case in ``test_local_limiter.py``, against both
engines. Here the hash is inspected in Redis, four processes race on one limit, and a
:class:`~tests.throttling.conftest.TcpProxy` plays a Redis that refuses, black-holes, answers
nonsense, or goes away and comes back.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django_redis import get_redis_connection

from django_gateway.throttling import LimiterUnavailable, LimitSpec, RedisLimiter
from django_gateway.throttling import redis_limiter as module
from django_gateway.throttling.redis_limiter import SCRIPT_SHA, pool_from_django_cache
from tests.marks import forks_like_gunicorn

from .conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, T0, FakeClock, free_port, make_pool


def stored(client: redis.Redis, key: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(key).items()}


# The window in Redis.


def test_the_hash_holds_the_buckets_their_sum_and_the_oldest(redis_limiter, redis_client, prefix):
    a = [LimitSpec(f"{prefix}a", 10, 60)]  # w = 1000 ms
    for t in (0, 10, 1500):
        redis_limiter.hit(a, now_ms=T0 + t)
    first = T0 // 1000
    assert stored(redis_client, a[0].key) == {
        str(first): 2,
        str(first + 1): 1,
        "w": 1000,
        "n": 3,
        "lo": first,
    }
    assert 60_000 < redis_client.pttl(a[0].key) <= 61_000  # period + w from the newest bucket


def test_expired_buckets_are_deleted_and_the_sum_recounted(redis_limiter, redis_client, prefix):
    a = [LimitSpec(f"{prefix}a", 10, 60)]
    for t in (0, 1500, 2500):
        redis_limiter.hit(a, now_ms=T0 + t)
    decision = redis_limiter.hit(a, now_ms=T0 + 62_000)  # buckets 0 and 1 have left
    assert decision.statuses[0].remaining == 8
    first = T0 // 1000
    assert stored(redis_client, a[0].key) == {
        str(first + 2): 1,
        str(first + 62): 1,
        "w": 1000,
        "n": 2,
        "lo": first + 2,
    }


def test_peek_and_denials_count_nothing(redis_limiter, redis_client, prefix):
    a = [LimitSpec(f"{prefix}a", 1, 60)]
    redis_limiter.peek(a, now_ms=T0)
    assert not redis_client.exists(a[0].key)
    redis_limiter.hit(a, now_ms=T0)
    before = stored(redis_client, a[0].key)
    assert not redis_limiter.hit(a, now_ms=T0 + 5).allowed
    assert stored(redis_client, a[0].key) == before


def test_a_denial_that_finds_only_expired_buckets_removes_the_key(
    redis_limiter, redis_client, prefix
):
    old, zero = LimitSpec(f"{prefix}old", 5, 60), LimitSpec(f"{prefix}zero", 0, 60)
    redis_limiter.hit([old], now_ms=T0)
    assert not redis_limiter.hit([old, zero], now_ms=T0 + 61_500).allowed
    assert not redis_client.exists(old.key)


def test_the_script_is_loaded_again_after_script_flush(redis_limiter, redis_client, prefix):
    a = [LimitSpec(f"{prefix}a", 2, 60)]
    redis_limiter.hit(a, now_ms=T0)
    redis_client.script_flush()
    assert redis_limiter.hit(a, now_ms=T0 + 1).statuses[0].remaining == 0
    assert redis_client.script_exists(SCRIPT_SHA) == [True]


def test_by_default_the_clock_is_redis_time(redis_limiter, redis_client, prefix):
    a = [LimitSpec(f"{prefix}a", 5, 60)]
    before = redis_client.time()
    decision = redis_limiter.hit(a)
    after = redis_client.time()
    bucket = int(redis_client.hget(a[0].key, "lo"))
    assert before[0] * 1000 + before[1] // 1000 <= bucket * 1000 + 999
    assert bucket * 1000 <= after[0] * 1000 + after[1] // 1000
    assert 60.0 < decision.statuses[0].reset <= 61.0


def test_works_without_hiredis_packing(redis_limiter, prefix, monkeypatch):
    monkeypatch.setattr(module, "_hiredis_pack", None)
    a = [LimitSpec(f"{prefix}a", 2, 60)]
    assert [redis_limiter.hit(a, now_ms=T0).allowed for _ in range(3)] == [True, True, False]


# Many processes, one limit.


def _race(prefix: str, barrier, results) -> None:
    """One process: 8 threads hitting one 100/minute limit 100 times in all."""
    limiter = RedisLimiter(make_pool(timeout=5.0))
    a = [LimitSpec(f"{prefix}shared", 100, 60)]
    admitted = []

    def client(times: int) -> None:
        admitted.extend(limiter.hit(a).allowed for _ in range(times))

    threads = [threading.Thread(target=client, args=(13 if i < 4 else 12,)) for i in range(8)]
    barrier.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((len(admitted), admitted.count(True)))


def test_four_processes_of_eight_threads_admit_exactly_the_limit(redis_client, prefix):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    processes = [ctx.Process(target=_race, args=(prefix, barrier, results)) for _ in range(4)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    assert sum(tried for tried, _ in outcomes) == 400
    assert sum(admitted for _, admitted in outcomes) == 100
    assert int(redis_client.hget(f"{prefix}shared", "n")) == 100


# Faults.


def test_nothing_listening_fails_fast(pools):
    limiter = RedisLimiter(pools(free_port(), timeout=0.1))
    started = time.monotonic()
    with pytest.raises(LimiterUnavailable):
        limiter.hit([LimitSpec("k", 1, 60)])
    assert time.monotonic() - started < 0.5


def test_a_black_hole_costs_one_timeout_then_the_breaker_answers(proxy, pools, prefix):
    limiter = RedisLimiter(pools(proxy.port, timeout=0.1), retry_interval=5.0)
    limiter.clock = clock = FakeClock()
    a = [LimitSpec(f"{prefix}a", 1, 60)]
    proxy.mode = "blackhole"
    started = time.monotonic()
    with pytest.raises(LimiterUnavailable):
        limiter.hit(a)
    assert 0.09 <= time.monotonic() - started < 0.5
    connections = proxy.accepted
    started = time.monotonic()
    for _ in range(100):
        with pytest.raises(LimiterUnavailable, match="recently"):
            limiter.hit(a)
    assert time.monotonic() - started < 0.05 and proxy.accepted == connections
    proxy.mode = "forward"
    clock.now += 4.9
    with pytest.raises(LimiterUnavailable, match="recently"):
        limiter.hit(a)
    clock.now += 0.2  # the interval has passed: try Redis again
    assert [limiter.hit(a).allowed for _ in range(2)] == [True, False]


def test_a_zero_retry_interval_disables_the_breaker(proxy, pools, prefix):
    limiter = RedisLimiter(pools(proxy.port, timeout=0.1), retry_interval=0)
    proxy.mode = "blackhole"
    for _ in range(2):
        with pytest.raises(LimiterUnavailable):
            limiter.hit([LimitSpec(f"{prefix}a", 1, 60)])
    assert proxy.accepted == 2


def test_a_reply_that_is_not_a_decision_is_a_fault(proxy, pools):
    limiter = RedisLimiter(pools(proxy.port, timeout=0.2))
    proxy.mode = "nonsense"
    with pytest.raises(LimiterUnavailable, match="reply"):
        limiter.hit([LimitSpec("k", 1, 60)])


def test_limits_apply_again_when_redis_comes_back(proxy, pools, prefix):
    limiter = RedisLimiter(pools(proxy.port, timeout=0.2), retry_interval=1.0)
    limiter.clock = clock = FakeClock()
    a = [LimitSpec(f"{prefix}a", 3, 60)]
    assert [limiter.hit(a).allowed for _ in range(2)] == [True, True]
    proxy.stop()  # Redis goes away: the pooled connection is closed, the port refuses
    with pytest.raises(LimiterUnavailable):
        limiter.hit(a)
    proxy.start()  # back on the same port, the counts kept
    with pytest.raises(LimiterUnavailable):
        limiter.hit(a)  # the breaker is still open
    clock.now += 1.0
    assert [limiter.hit(a).allowed for _ in range(2)] == [True, False]


def test_a_connection_redis_closed_while_idle_is_replaced_silently(proxy, pools, prefix):
    limiter = RedisLimiter(pools(proxy.port, timeout=0.2))
    a = [LimitSpec(f"{prefix}a", 3, 60)]
    limiter.hit(a)
    proxy.stop()
    proxy.start()  # a restart between two requests
    assert limiter.hit(a).statuses[0].remaining == 1


@forks_like_gunicorn
def test_a_forked_child_opens_its_own_connection(redis_limiter, prefix):
    """gunicorn forks after the app is loaded: a child must not share the parent's socket."""
    spec = [LimitSpec(f"{prefix}fork", 10, 60)]
    redis_limiter.hit(spec)
    (parent_conn,) = redis_limiter._idle
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it inherited the connection, then count once
        inherited = bool(redis_limiter._idle)
        remaining = redis_limiter.hit(spec).statuses[0].remaining
        os.write(write, f"{inherited} {remaining}".encode())
        os._exit(0)
    os.close(write)
    assert os.read(read, 100).decode() == "False 8"
    os.waitpid(pid, 0)
    assert redis_limiter._idle == [parent_conn]
    assert redis_limiter.hit(spec).statuses[0].remaining == 7  # the parent's socket still works


# The pool built from the project's cache.


LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def redis_cache(location: str, **options) -> dict:
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": location,
        "OPTIONS": {"SOCKET_TIMEOUT": 5, **options},
    }


def test_pool_from_django_cache_keeps_the_address_and_sets_our_timeouts(redis_client, prefix):
    location = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    with override_settings(CACHES={"default": LOCMEM, "limits": redis_cache(location)}):
        pool = pool_from_django_cache("limits", socket_timeout=0.1, connect_timeout=0.2)
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == (REDIS_HOST, REDIS_PORT, REDIS_DB)
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.1, 0.2)
    assert kwargs["retry"].get_retries() == 0
    assert kwargs["parser_class"] is redis.connection.DefaultParser  # hiredis, as django-redis set
    limiter = RedisLimiter(pool)
    assert limiter.hit([LimitSpec(f"{prefix}a", 1, 60)]).allowed
    pool.disconnect()


def test_pool_from_django_cache_keeps_tls_and_credentials():
    cache = redis_cache("rediss://cache.internal:6390/3", PASSWORD="s3cret")
    with override_settings(CACHES={"default": LOCMEM, "limits": cache}):
        pool = pool_from_django_cache("limits", socket_timeout=0.1, connect_timeout=0.1)
    assert pool.connection_class is redis.SSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.internal", 6390, 3)
    assert kwargs["password"] == "s3cret"


def test_pool_from_django_cache_keeps_a_unix_socket_location():
    """``unix:///run/redis.sock?db=2``: the query is cut off without losing the ``//``."""
    cache = redis_cache("unix:///run/redis/redis.sock?db=2&socket_timeout=9")
    with override_settings(CACHES={"default": LOCMEM, "limits": cache}):
        pool = pool_from_django_cache("limits", socket_timeout=0.1, connect_timeout=0.1)
    assert pool.connection_class is redis.UnixDomainSocketConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["path"], kwargs["db"], kwargs["socket_timeout"]) == (
        "/run/redis/redis.sock",
        2,
        0.1,
    )


@pytest.mark.parametrize(
    "limits",
    [LOCMEM, {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": ""}, None],
    ids=["locmem", "django-own-redis-cache", "missing-alias"],
)
def test_pool_from_django_cache_needs_a_django_redis_cache(limits):
    caches = {"default": LOCMEM, **({"limits": limits} if limits else {})}
    with (
        override_settings(CACHES=caches),
        pytest.raises(ImproperlyConfigured, match="django-redis"),
    ):
        pool_from_django_cache("limits", socket_timeout=0.1, connect_timeout=0.1)


def test_pool_from_django_cache_timeouts_are_ours_wherever_the_cache_sets_them(
    redis_client, prefix
):
    primary = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    query = "socket_timeout=9&socket_connect_timeout=9&retry_on_timeout=yes&health_check_interval=7"
    cache = redis_cache(
        f"{primary}?{query},redis://replica.invalid:6390/1",
        SOCKET_CONNECT_TIMEOUT=9,
        CONNECTION_POOL_KWARGS={"socket_timeout": 9, "socket_keepalive": True},
    )
    with override_settings(CACHES={"default": LOCMEM, "limits": cache}):
        pool = pool_from_django_cache("limits", socket_timeout=0.1, connect_timeout=0.2)
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == (REDIS_HOST, REDIS_PORT, REDIS_DB)
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.1, 0.2)
    assert "retry_on_timeout" not in kwargs and kwargs["retry"].get_retries() == 0
    assert kwargs["health_check_interval"] == 7 and kwargs["socket_keepalive"] is True
    assert RedisLimiter(pool).hit([LimitSpec(f"{prefix}a", 1, 60)]).allowed
    pool.disconnect()


def test_pool_from_django_cache_shares_no_per_pool_object_with_the_cache(redis_client, prefix):
    """RESP3 makes redis-py add per-pool machinery (maintenance notifications) to a pool."""
    location = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    cache = redis_cache(location, CONNECTION_POOL_KWARGS={"protocol": 3})
    with override_settings(CACHES={"default": LOCMEM, "limits": cache}):
        pool = pool_from_django_cache("limits", socket_timeout=0.1, connect_timeout=0.2)
        source = get_redis_connection("limits").connection_pool
    plain = (str, bytes, int, float, bool, type, type(None))
    shared = [
        name
        for name, value in pool.connection_kwargs.items()
        if not isinstance(value, plain) and source.connection_kwargs.get(name) is value
    ]
    assert shared == []
    assert pool.connection_kwargs["protocol"] == 3
    limiter = RedisLimiter(pool)
    assert limiter.hit([LimitSpec(f"{prefix}a", 1, 60)]).allowed
    (conn,) = limiter._idle
    assert conn.socket_timeout == 0.1
    pool.disconnect()
