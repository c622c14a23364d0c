"""Rate limiting: an atomic sliding-window engine in Redis, and the same in memory for development.

:class:`RedisLimiter` is the production engine (one Lua script, one round trip for all the limits
of a request); :class:`LocalLimiter` applies the same algorithm per process. Both implement
:class:`Limiter` and raise :class:`LimiterUnavailable` when they cannot decide.
"""

from .base import BUCKETS, Decision, Limiter, LimiterUnavailable, LimitSpec, LimitStatus
from .local_limiter import LocalLimiter
from .redis_limiter import RedisLimiter, pool_from_django_cache

__all__ = [
    "BUCKETS",
    "Decision",
    "LimitSpec",
    "LimitStatus",
    "Limiter",
    "LimiterUnavailable",
    "LocalLimiter",
    "RedisLimiter",
    "pool_from_django_cache",
]
