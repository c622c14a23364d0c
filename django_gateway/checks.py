"""System checks for what a user can get wrong; every ID is documented in ``docs/checks.md``.

E001  GatewayMiddleware is not in MIDDLEWARE.
E002  GatewayMiddleware is in MIDDLEWARE more than once.
E003  GatewayMiddleware comes after middleware that reads the body or rewrites responses.
E004  GATEWAY has a key the gateway does not know (a typo silently ignored is worse).
E005  A GATEWAY value has the wrong type or is out of range.
E006  TRUSTED_PROXIES holds something that is not a CIDR.
E007  GATEWAY['CACHE_ALIAS'] or ['RATE_LIMIT_CACHE_ALIAS'] names a cache that is not in CACHES.
E008  RATE_LIMIT_LOCAL_FALLBACK is False but the rate-limit cache is not django-redis.
W001  The configuration cache is per process, so changes are polled from the database.
W002  Rate limits exist and are counted in each process's memory (no django-redis cache).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django.conf import settings
from django.core import checks

from .conf import DEFAULTS, DJANGO_REDIS_BACKEND

MIDDLEWARE_PATH = "django_gateway.middleware.GatewayMiddleware"

# Middleware that must not run before the gateway: each consumes the request body, answers on its
# own, or rewrites responses (compresses them, adds cookies or Vary, turns them into 304s).
MUST_COME_AFTER = (
    "django.middleware.gzip.GZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.http.ConditionalGetMiddleware",
    "django.middleware.cache.UpdateCacheMiddleware",
    "django.middleware.cache.FetchFromCacheMiddleware",
    "django.middleware.cache.CacheMiddleware",
)

_HEADER_TOKEN = re.compile(r"^[A-Za-z0-9-]+$")

_NUMBERS = {
    "CONFIG_POLL_INTERVAL": (0.05, 3600),
    "EJECT_AFTER_FAILURES": (1, 1000),
    "EJECT_COOLDOWN": (0.1, 86400),
    "POOL_MAX_IDLE_PER_HOST": (0, 10000),
    "POOL_IDLE_TIMEOUT": (0.1, 3600),
    "RETRY_AFTER_UNAVAILABLE": (1, 86400),
    "API_KEY_CACHE_SIZE": (0, 10_000_000),
    "LAST_USED_FLUSH_INTERVAL": (1, 86400),
    "JWT_LEEWAY": (0, 3600),
    "JWT_MAX_TOKEN_BYTES": (256, 1 << 20),
    "JWT_CACHE_SIZE": (0, 1_000_000),
    "JWKS_CACHE_SECONDS": (1, 86400 * 7),
    "JWKS_MIN_REFRESH_INTERVAL": (0, 86400),
    "JWKS_TIMEOUT": (0.05, 60),
    "AUTH_FAILURE_LIMIT": (0, 1_000_000),
    "AUTH_FAILURE_WINDOW": (1, 86400),
    "RATE_LIMIT_TIMEOUT": (0.001, 5),
    "RATE_LIMIT_RETRY_INTERVAL": (0, 3600),
    "CONSUL_TIMEOUT": (0.05, 300),
    "CONSUL_WAIT": (0.1, 600),
    "CONSUL_COLD_START_TIMEOUT": (0, 60),
    "CONSUL_MAX_STALE": (0, 86400 * 7),
    "CONSUL_BACKOFF_MIN": (0.01, 3600),
    "CONSUL_BACKOFF_MAX": (0.01, 3600),
    "CONSUL_MIN_QUERY_INTERVAL": (0, 3600),
}
_BOOLEANS = (
    "ALLOW_LINK_LOCAL_UPSTREAMS",
    "REWRITE_LOCATION",
    "ACCESS_LOG",
    "JWT_REQUIRE_EXP",
    "RATE_LIMIT_HEADERS",
    "RATE_LIMIT_LOCAL_FALLBACK",
)
_STRINGS = ("CACHE_ALIAS", "VIA", "REQUEST_ID_HEADER", "JWT_KEY_CLAIM", "RATE_LIMIT_KEY_PREFIX")
_OPTIONAL_STRINGS = (
    "API_KEY_QUERY_PARAM",
    "JWT_COOKIE",
    "JWT_GROUPS_CLAIM",
    "RATE_LIMIT_CACHE_ALIAS",
    "CONSUL_ADDRESS",
    "CONSUL_SCHEME",
    "CONSUL_TOKEN",
    "CONSUL_CERT",
    "CONSUL_KEY",
    "CONSUL_DATACENTER",
)


def check_middleware(**kwargs: Any) -> list[checks.CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    count = middleware.count(MIDDLEWARE_PATH)
    if count == 0:
        return [
            checks.Error(
                "GatewayMiddleware is not installed, so no request is proxied.",
                hint=f"Add {MIDDLEWARE_PATH!r} to MIDDLEWARE, right after SecurityMiddleware.",
                id="django_gateway.E001",
            )
        ]
    if count > 1:
        return [
            checks.Error(
                "GatewayMiddleware is listed more than once in MIDDLEWARE.",
                hint="Keep a single entry, right after SecurityMiddleware.",
                id="django_gateway.E002",
            )
        ]
    before = middleware[: middleware.index(MIDDLEWARE_PATH)]
    offenders = [path for path in before if path in MUST_COME_AFTER]
    if offenders:
        return [
            checks.Error(
                f"GatewayMiddleware comes after {', '.join(offenders)}, which would read, answer or "
                "rewrite proxied requests.",
                hint="Move GatewayMiddleware above them (right after SecurityMiddleware).",
                id="django_gateway.E003",
            )
        ]
    return []


def _value_errors(name: str, value: Any) -> str | None:
    if name in _NUMBERS:
        low, high = _NUMBERS[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            return f"must be a number from {low} to {high}"
    elif name in _BOOLEANS and not isinstance(value, bool):
        return "must be True or False"
    elif name in _STRINGS and not isinstance(value, str):
        return "must be a string"
    elif (
        name == "MAX_BODY_SIZE"
        and value is not None
        and (isinstance(value, bool) or not isinstance(value, int) or value < 0)
    ):
        return "must be a number of bytes or None"
    elif name == "TRUSTED_PROXIES" and not isinstance(value, list | tuple):
        return "must be a list of CIDRs"
    elif (
        name in _OPTIONAL_STRINGS
        and value is not None
        and (not isinstance(value, str) or not value)
    ):
        return "must be a non-empty string or None"
    elif (
        name == "JWT_MAXIMUM_EXPIRATION"
        and value is not None
        and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0)
    ):
        return "must be a number of seconds or None"
    elif name == "API_KEY_HEADERS" and (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(v, str) and _HEADER_TOKEN.match(v) for v in value)
    ):
        return "must be a non-empty list of header names (dashes, not underscores)"
    return None


def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    user = getattr(settings, "GATEWAY", None) or {}
    if not isinstance(user, dict):
        return [checks.Error("GATEWAY must be a dict.", id="django_gateway.E005")]
    errors: list[checks.CheckMessage] = []
    for name in sorted(set(user) - set(DEFAULTS)):
        errors.append(
            checks.Error(
                f"GATEWAY[{name!r}] is not a django-gateway setting.",
                hint="See docs/settings.md for the list; check the spelling.",
                id="django_gateway.E004",
            )
        )
    for name in sorted(set(user) & set(DEFAULTS)):
        problem = _value_errors(name, user[name])
        if problem:
            errors.append(checks.Error(f"GATEWAY[{name!r}] {problem}.", id="django_gateway.E005"))
    for cidr in (
        user.get("TRUSTED_PROXIES", [])
        if isinstance(user.get("TRUSTED_PROXIES"), list | tuple)
        else []
    ):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except (TypeError, ValueError):
            errors.append(
                checks.Error(
                    f"GATEWAY['TRUSTED_PROXIES'] entry {cidr!r} is not an IP network.",
                    hint="Use CIDRs such as '10.0.0.0/8' or single addresses.",
                    id="django_gateway.E006",
                )
            )
    errors.extend(_check_cache(user.get("CACHE_ALIAS", DEFAULTS["CACHE_ALIAS"])))
    return errors


def _caches() -> dict[str, dict[str, Any]]:
    """``CACHES`` as Django reads it: a local-memory "default" when the setting is empty."""
    return getattr(settings, "CACHES", {}) or {"default": {}}


def _missing_cache(setting: str, alias: Any) -> list[checks.CheckMessage]:
    if alias in _caches():
        return []
    return [
        checks.Error(
            f"GATEWAY[{setting!r}] is {alias!r}, which is not in CACHES.", id="django_gateway.E007"
        )
    ]


def _check_cache(alias: Any) -> list[checks.CheckMessage]:
    if missing := _missing_cache("CACHE_ALIAS", alias):
        return missing
    backend = _caches()[alias].get("BACKEND", "django.core.cache.backends.locmem.LocMemCache")
    if backend.endswith(("LocMemCache", "DummyCache")):
        return [
            checks.Warning(
                f"The cache {alias!r} is per process, so configuration changes are polled from "
                "the database.",
                hint="Point GATEWAY['CACHE_ALIAS'] at Redis (django-redis) in production.",
                id="django_gateway.W001",
            )
        ]
    return []


def check_rate_limit_cache(
    databases: list[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Limits want a cache every process shares; without one they count per process.

    No database row ever makes this an error (an error would block ``migrate`` and deploys): E008
    is about settings alone, the explicit choice to refuse counting without Redis. W002 needs to
    know whether limits exist, which takes a query: like every Django check that reads the
    database it runs when ``databases`` is given (``check --database default``, ``migrate``).
    """
    user = getattr(settings, "GATEWAY", None) or {}
    if not isinstance(user, dict):
        return []  # E005 already
    alias = user.get("RATE_LIMIT_CACHE_ALIAS") or user.get("CACHE_ALIAS", DEFAULTS["CACHE_ALIAS"])
    setting = "RATE_LIMIT_CACHE_ALIAS" if user.get("RATE_LIMIT_CACHE_ALIAS") else "CACHE_ALIAS"
    if missing := _missing_cache(setting, alias):
        return missing if setting == "RATE_LIMIT_CACHE_ALIAS" else []  # else E007 said it
    if _caches()[alias].get("BACKEND") == DJANGO_REDIS_BACKEND:
        return []
    if not user.get("RATE_LIMIT_LOCAL_FALLBACK", DEFAULTS["RATE_LIMIT_LOCAL_FALLBACK"]):
        return [
            checks.Error(
                f"GATEWAY['RATE_LIMIT_LOCAL_FALLBACK'] is False but the cache {alias!r} is not a "
                "django-redis cache, so strict rate limits answer 503 and fault-tolerant ones "
                "are not enforced.",
                hint=f"Use {DJANGO_REDIS_BACKEND!r} for GATEWAY[{setting!r}], or remove "
                "RATE_LIMIT_LOCAL_FALLBACK to count in each process's memory.",
                id="django_gateway.E008",
            )
        ]
    if not databases or not _rate_limits_exist(databases):
        return []
    return [
        checks.Warning(
            f"Rate limits are counted in each process's memory because the cache {alias!r} is "
            "not a django-redis cache: N processes admit up to N times each limit.",
            hint=f"Use {DJANGO_REDIS_BACKEND!r} for GATEWAY[{setting!r}] to count every process "
            "together (docs/rate-limiting.md).",
            id="django_gateway.W002",
        )
    ]


def _rate_limits_exist(databases: list[str]) -> bool:
    from django.db import DatabaseError

    from .models import RateLimit

    try:
        return any(RateLimit.objects.using(db).filter(enabled=True).exists() for db in databases)
    except DatabaseError:  # not migrated yet
        return False


def register() -> None:
    checks.register(check_middleware, "django_gateway")
    checks.register(check_settings, "django_gateway")
    checks.register(check_rate_limit_cache, "django_gateway")
