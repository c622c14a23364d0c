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
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import DatabaseError

from .conf import DJANGO_REDIS_BACKEND
from .models import RateLimit
from .settings_table import DEFAULTS, SETTINGS

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


def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    """E004 and E005 from the settings table, so a new setting is checked as soon as it exists."""
    user = getattr(settings, "GATEWAY", None) or {}
    if not isinstance(user, dict):
        return [checks.Error("GATEWAY must be a dict.", id="django_gateway.E005")]
    errors: list[checks.CheckMessage] = [
        checks.Error(
            f"GATEWAY[{name!r}] is not a django-gateway setting.",
            hint="See docs/settings.md for the list; check the spelling.",
            id="django_gateway.E004",
        )
        for name in sorted(user.keys() - DEFAULTS.keys())
    ]
    for setting in SETTINGS:
        if setting.name in user and (problem := setting.rule.problem(user[setting.name])):
            errors.append(
                checks.Error(
                    f"GATEWAY[{setting.name!r}] {problem}.",
                    hint=f"Allowed: {setting.rule.text} (docs/settings.md).",
                    id="django_gateway.E005",
                )
            )
    errors.extend(_check_trusted_proxies(user.get("TRUSTED_PROXIES")))
    errors.extend(_check_cache(user.get("CACHE_ALIAS", DEFAULTS["CACHE_ALIAS"])))
    return errors


def _check_trusted_proxies(proxies: object) -> list[checks.CheckMessage]:
    """E006 names each entry that is not a network (E005 already refused a non-list)."""
    errors: list[checks.CheckMessage] = []
    for cidr in proxies if isinstance(proxies, list | tuple) else ():
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
    return errors


def _caches() -> dict[str, dict[str, Any]]:
    """``CACHES`` as Django reads it: a local-memory "default" when the setting is empty."""
    return getattr(settings, "CACHES", {}) or {"default": {}}


def _cache(alias: object) -> dict[str, Any] | None:
    """The ``CACHES`` entry ``alias`` names; ``None`` if none does (a list given as the alias,
    which E005 reports, must not crash the checks on the way)."""
    caches = _caches()
    return caches[alias] if isinstance(alias, str) and alias in caches else None


def _unknown_cache(setting: str, alias: object) -> checks.CheckMessage:
    return checks.Error(
        f"GATEWAY[{setting!r}] is {alias!r}, which is not in CACHES.", id="django_gateway.E007"
    )


def _check_cache(alias: object) -> list[checks.CheckMessage]:
    cache = _cache(alias)
    if cache is None:
        return [_unknown_cache("CACHE_ALIAS", alias)]
    backend = cache.get("BACKEND", "django.core.cache.backends.locmem.LocMemCache")
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
    databases: Sequence[str] | None = None, **kwargs: Any
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
    cache = _cache(alias)
    if cache is None:  # E007: check_settings already says it for CACHE_ALIAS
        return [_unknown_cache(setting, alias)] if setting == "RATE_LIMIT_CACHE_ALIAS" else []
    if cache.get("BACKEND") == DJANGO_REDIS_BACKEND:
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


def _rate_limits_exist(databases: Sequence[str]) -> bool:
    try:
        return any(RateLimit.objects.using(db).filter(enabled=True).exists() for db in databases)
    except DatabaseError:  # not migrated yet
        return False


def register() -> None:
    checks.register(check_middleware, "django_gateway")
    checks.register(check_settings, "django_gateway")
    checks.register(check_rate_limit_cache, "django_gateway")
