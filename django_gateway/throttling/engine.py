"""Which limiter this process uses, and how counter keys are named.

The limiter is built from settings on first use and rebuilt when they change: the Redis engine on
the django-redis cache named by ``RATE_LIMIT_CACHE_ALIAS`` (else ``CACHE_ALIAS``), with its own
connection pool so the short ``RATE_LIMIT_TIMEOUT`` and the no-retry policy never touch the
project's cache. Without django-redis, the in-process engine (Kong's ``local`` policy: exact in one
process, N times the limit across N; check W002 and the rate-limit admin say so), unless
``RATE_LIMIT_LOCAL_FALLBACK = False`` chose to fail closed: then an engine that is always
unavailable, so limits behave exactly as with Redis down (check E008). The WSGI shell's engine
(:func:`build_limiter`) and the ASGI shell's (:func:`build_async_limiter`) follow that one
decision (:func:`_build`) with the same pool parameters, so both count in the same Redis keys.

Keys are ``<cache KEY_PREFIX>:<RATE_LIMIT_KEY_PREFIX>:<limit id>:<period seconds>:<who>``: the
limit (not the request path) and the resolved identity, so ``/api//x`` and ``/api/x`` share a
bucket, and changing a limit's period starts a fresh one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..conf import DJANGO_REDIS_BACKEND, gateway_settings
from .aio_limiter import (
    AsyncLimiter,
    AsyncRedisLimiter,
    InProcessLimiter,
    async_pool_from_django_cache,
)
from .base import Decision, Limiter, LimiterUnavailable, LimitSpec
from .local_limiter import LocalLimiter
from .redis_limiter import RedisLimiter, pool_from_django_cache

logger = logging.getLogger(__name__)

_Engine = TypeVar("_Engine", Limiter, AsyncLimiter)


class UnconfiguredLimiter(Limiter):
    """Stands in when no shared cache is configured: every call is 'Redis is down'."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _evaluate(self, specs: Sequence[LimitSpec], cost: int, now_ms: int | None) -> Decision:
        raise LimiterUnavailable(self.reason)

    def reset(self, keys: Sequence[str]) -> int:
        raise LimiterUnavailable(self.reason)


def cache_alias() -> str:
    alias: str = gateway_settings.RATE_LIMIT_CACHE_ALIAS or gateway_settings.CACHE_ALIAS
    return alias


def build_limiter() -> Limiter:
    """The engine the settings ask for (the runtime holds the one in use)."""
    return _build(_redis_limiter, _as_is)


def build_async_limiter() -> AsyncLimiter:
    """The same engine for the event loop: Redis through ``redis.asyncio``, or the in-process
    engine behind the async interface."""
    return _build(_async_redis_limiter, InProcessLimiter)


def _build(
    redis_engine: Callable[[str], _Engine], in_process: Callable[[Limiter], _Engine]
) -> _Engine:
    """The one decision both builders follow: Redis behind the django-redis cache (built by
    ``redis_engine``), else an in-process engine (wrapped by ``in_process``): memory, or one
    that is always unavailable."""
    alias = cache_alias()
    config = settings.CACHES.get(alias, {})
    if config.get("BACKEND") == DJANGO_REDIS_BACKEND:
        try:
            return redis_engine(alias)
        except (ImproperlyConfigured, ValueError) as exc:  # Sentinel, a LOCATION redis-py
            # refuses...: treat Redis as down (the fault policy answers), and say why
            logger.error("Rate limits cannot be counted: %s", exc)
            return in_process(UnconfiguredLimiter(str(exc)))
    if gateway_settings.RATE_LIMIT_LOCAL_FALLBACK:
        logger.warning(
            "Rate limits are counted in this process's memory: the cache %r is not django-redis, "
            "so N processes admit up to N times each limit (check W002).",
            alias,
        )
        return in_process(LocalLimiter())
    reason = f"the rate-limit cache {alias!r} is not a django-redis cache (check E008)"
    logger.error("Rate limits cannot be counted: %s", reason)
    return in_process(UnconfiguredLimiter(reason))


def _redis_limiter(alias: str) -> Limiter:
    timeout = gateway_settings.RATE_LIMIT_TIMEOUT
    pool = pool_from_django_cache(alias, socket_timeout=timeout, connect_timeout=timeout)
    return RedisLimiter(pool, retry_interval=gateway_settings.RATE_LIMIT_RETRY_INTERVAL)


def _async_redis_limiter(alias: str) -> AsyncLimiter:
    timeout = gateway_settings.RATE_LIMIT_TIMEOUT
    return AsyncRedisLimiter(
        async_pool_from_django_cache(alias, connect_timeout=timeout),
        timeout=timeout,
        retry_interval=gateway_settings.RATE_LIMIT_RETRY_INTERVAL,
    )


def _as_is(limiter: Limiter) -> Limiter:
    return limiter


def _key_prefix() -> str:
    cache_prefix = settings.CACHES.get(cache_alias(), {}).get("KEY_PREFIX", "")
    own = gateway_settings.RATE_LIMIT_KEY_PREFIX
    return f"{cache_prefix}:{own}" if cache_prefix else own


def key_prefix() -> str:
    return gateway_settings.derived("rate_limit_key_prefix", _key_prefix)


def counter_key(limit_id: int, seconds: int, who: str) -> str:
    return f"{key_prefix()}:{limit_id}:{seconds}:{who}"


def consumer_part(consumer_id: int) -> str:
    return f"c{consumer_id}"


def credential_part(credential_type: str, credential: str) -> str:
    return f"{credential_type}:{digest(credential)}"


def header_part(value: str) -> str:
    return f"h:{digest(value)}"


def digest(value: str) -> str:
    """Bounded, printable key parts whatever the client sent."""
    return hashlib.blake2b(value.encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()


@lru_cache(maxsize=4096)
def client_part(address: str) -> str:
    """IPv4 addresses count alone; IPv6 clients by /64, the block one subscriber usually holds."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"ip:{digest(address)}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip:{ipaddress.IPv6Network((ip, 64), strict=False).network_address}/64"
    return f"ip:{ip}"
