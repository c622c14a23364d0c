"""The async engine the settings choose, and that it counts with the sync engine's shell.

Both shells read the same ``RATE_LIMIT_CACHE_ALIAS``: a django-redis cache gives both Redis (one
count for a limit served by the WSGI and the ASGI shell at once, through TCP or a Unix socket),
any other cache the in-process engine or the always-unavailable stand-in, and a LOCATION redis-py
refuses is "Redis down" on the loop as in the sync shell.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from django.conf import settings
from django.test import override_settings
from redis.asyncio.retry import Retry as AsyncRetry

from django_gateway.throttling import LimiterUnavailable, LimitSpec, LocalLimiter, RedisLimiter
from django_gateway.throttling.aio_limiter import AsyncLimiter, AsyncRedisLimiter, InProcessLimiter
from django_gateway.throttling.engine import (
    UnconfiguredLimiter,
    build_async_limiter,
    build_limiter,
)

from .conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, T0

# The engine the settings choose.


LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def limits_cache(cache: dict[str, Any], **gateway: Any) -> Any:
    return override_settings(
        CACHES={**settings.CACHES, "limits": cache},
        GATEWAY={**settings.GATEWAY, "RATE_LIMIT_CACHE_ALIAS": "limits", **gateway},
    )


def test_a_django_redis_cache_gives_both_shells_redis(run, redis_client, prefix):
    cache = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
        "OPTIONS": {"SOCKET_TIMEOUT": 5},
    }
    with limits_cache(cache, RATE_LIMIT_TIMEOUT=0.3, RATE_LIMIT_RETRY_INTERVAL=2.0):
        sync_limiter, limiter = build_limiter(), build_async_limiter()
    assert isinstance(sync_limiter, RedisLimiter) and isinstance(limiter, AsyncRedisLimiter)
    assert (limiter.timeout, limiter.retry_interval) == (0.3, 2.0)
    kwargs = limiter.pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == (REDIS_HOST, REDIS_PORT, REDIS_DB)
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (None, 0.3)
    assert isinstance(kwargs["retry"], AsyncRetry) and kwargs["retry"].get_retries() == 0
    assert "parser_class" not in kwargs  # django-redis names a sync parser; asyncio picks its own
    assert isinstance(
        limiter.pool.make_connection()._parser, redis.asyncio.connection.DefaultParser
    )
    a = [LimitSpec(f"{prefix}a", 2, 60)]
    assert sync_limiter.hit(a).allowed

    async def main() -> list[bool]:
        allowed = [(await limiter.hit(a)).allowed for _ in range(2)]
        await limiter.aclose()
        return allowed

    assert run(main()) == [True, False]  # one count for both shells
    sync_limiter.pool.disconnect()


@pytest.mark.parametrize(
    ("fallback", "engine"), [(True, LocalLimiter), (False, UnconfiguredLimiter)]
)
def test_without_django_redis_the_loop_gets_the_in_process_engine(run, fallback, engine):
    with limits_cache(LOCMEM, RATE_LIMIT_LOCAL_FALLBACK=fallback):
        limiter = build_async_limiter()
    assert isinstance(limiter, InProcessLimiter) and isinstance(limiter.limiter, engine)

    async def main() -> list[bool]:
        a = [LimitSpec("k", 1, 60)]
        return [
            (await limiter.hit(a, now_ms=T0)).allowed,
            (await limiter.peek(a, now_ms=T0)).allowed,
        ]

    if engine is LocalLimiter:
        assert run(main()) == [True, False]
    else:
        with pytest.raises(LimiterUnavailable, match="E008"):
            run(main())


def test_a_location_redis_cannot_use_is_redis_down_on_the_loop_too(run, caplog):
    cache = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "nonsense://x"}
    with limits_cache(cache):
        limiter: AsyncLimiter = build_async_limiter()
    assert isinstance(limiter, InProcessLimiter)
    assert isinstance(limiter.limiter, UnconfiguredLimiter)
    assert "Rate limits cannot be counted" in caplog.text

    async def main() -> None:
        with pytest.raises(LimiterUnavailable, match="scheme"):
            await limiter.reset(["k"])

    run(main())


@pytest.fixture(scope="module")
def unix_redis() -> Iterator[Path]:
    """A redis-server of its own listening only on a Unix socket."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs the redis-server binary to start a Redis on a Unix socket")
    workdir = Path(tempfile.mkdtemp(prefix="gw-redis-"))  # short: socket paths are limited
    path = workdir / "redis.sock"
    command = [binary, "--port", "0", "--unixsocket", str(path), "--unixsocketperm", "700"]
    command += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield path
    finally:
        process.terminate()
        process.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


def test_both_shells_count_through_a_unix_socket_location(run, unix_redis, prefix):
    cache = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"unix://{unix_redis}?db=3"}
    with limits_cache(cache):
        sync_limiter, limiter = build_limiter(), build_async_limiter()
    assert isinstance(limiter, AsyncRedisLimiter)
    assert limiter.pool.connection_class is redis.asyncio.UnixDomainSocketConnection
    assert limiter.pool.connection_kwargs["path"] == str(unix_redis)
    a = [LimitSpec(f"{prefix}a", 3, 60)]
    assert sync_limiter.hit(a).allowed

    async def main() -> list[int]:
        remaining = [(await limiter.hit(a)).statuses[0].remaining for _ in range(2)]
        await limiter.aclose()
        return remaining

    assert run(main()) == [1, 0]
    with contextlib.closing(redis.Redis(unix_socket_path=str(unix_redis), db=3)) as client:
        assert int(client.hget(a[0].key, "n")) == 3
    assert isinstance(sync_limiter, RedisLimiter)
    sync_limiter.pool.disconnect()
