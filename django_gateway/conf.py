"""The one place that reads ``settings.GATEWAY``.

Every key has a documented default here (and in ``docs/settings.md``). Values are read lazily and
cached; the cache is dropped on Django's ``setting_changed`` signal so ``override_settings`` works in
tests. Nothing binds a setting at import or class-definition time, which is the mistake that makes
DRF's ``throttle_classes`` ignore ``override_settings``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

MiB = 1024 * 1024
#: The cache backend rate limits need (check E008): a Redis every process shares, via django-redis.
DJANGO_REDIS_BACKEND = "django_redis.cache.RedisCache"

DEFAULTS: dict[str, Any] = {
    # Seconds between checks of the shared configuration version (admin edits go live this fast).
    "CONFIG_POLL_INTERVAL": 1.0,
    # Django cache alias holding the configuration version shared by every process and machine.
    "CACHE_ALIAS": "default",
    # CIDRs of reverse proxies in front of the gateway whose X-Forwarded-* headers are believed.
    "TRUSTED_PROXIES": [],
    # Refuse upstreams on link-local / cloud metadata addresses (169.254.0.0/16, fe80::/10, ...).
    "ALLOW_LINK_LOCAL_UPSTREAMS": False,
    # Largest request body proxied, in bytes (None: unlimited). Routes may override it.
    "MAX_BODY_SIZE": 10 * MiB,
    # Token put in the Via header both ways; an empty string leaves Via alone.
    "VIA": "django-gateway",
    # Header carrying the request id to the upstream and back to the client.
    "REQUEST_ID_HEADER": "X-Request-ID",
    # Rewrite Location headers that point at the upstream's own origin to the gateway's.
    "REWRITE_LOCATION": True,
    # Passive health: consecutive failures that eject an instance, and seconds before a probe.
    "EJECT_AFTER_FAILURES": 3,
    "EJECT_COOLDOWN": 10.0,
    # Idle keep-alive connections kept per upstream instance, and how long they may idle (seconds).
    "POOL_MAX_IDLE_PER_HOST": 32,
    "POOL_IDLE_TIMEOUT": 30.0,
    # Seconds a 503 for "no instance available" tells clients to wait (Retry-After).
    "RETRY_AFTER_UNAVAILABLE": 5,
    # Emit one log record per proxied request on the ``django_gateway.access`` logger.
    "ACCESS_LOG": True,
    # --- authentication (docs/authentication.md) ---
    # Request headers an API key is read from; the first one present is used.
    "API_KEY_HEADERS": ["X-API-Key"],
    # Query parameter an API key may be read from; None (the default) refuses keys in URLs.
    "API_KEY_QUERY_PARAM": None,
    # API keys remembered per process (an LRU cache emptied on every configuration change).
    "API_KEY_CACHE_SIZE": 10000,
    # Seconds between the batched writes of APIKey.last_used_at.
    "LAST_USED_FLUSH_INTERVAL": 60.0,
    # JWT: the claim naming the credential, clock leeway in seconds, whether exp is required,
    # the longest lifetime accepted (exp - now, seconds; None: any), a cookie to read the token
    # from (None: only Authorization: Bearer), a claim holding extra ACL groups, the largest token.
    "JWT_KEY_CLAIM": "iss",
    "JWT_LEEWAY": 10,
    "JWT_REQUIRE_EXP": True,
    "JWT_MAXIMUM_EXPIRATION": None,
    "JWT_COOKIE": None,
    "JWT_GROUPS_CLAIM": None,
    "JWT_MAX_TOKEN_BYTES": 8192,
    # Verified tokens remembered per process (auth/token_cache.py); 0 verifies every request.
    "JWT_CACHE_SIZE": 4096,
    # JWKS: seconds a fetched key set is kept, the fewest seconds between fetches triggered by an
    # unknown kid, and the fetch timeout.
    "JWKS_CACHE_SECONDS": 300,
    "JWKS_MIN_REFRESH_INTERVAL": 30,
    "JWKS_TIMEOUT": 2.0,
    # Brute force: after this many failed authentications from one client address within the
    # window (seconds), further attempts get 429 until the window ends; 0 turns it off.
    "AUTH_FAILURE_LIMIT": 20,
    "AUTH_FAILURE_WINDOW": 60,
    # --- rate limiting (docs/rate-limiting.md) ---
    # Alias of the django-redis cache that holds the counters (None: the CACHE_ALIAS cache).
    "RATE_LIMIT_CACHE_ALIAS": None,
    # Prefix of every counter key, after the cache's own KEY_PREFIX.
    "RATE_LIMIT_KEY_PREFIX": "gateway:rl",
    # Seconds a Redis call may take (connect, or reply) before Redis counts as unreachable.
    "RATE_LIMIT_TIMEOUT": 0.1,
    # Seconds the limiter leaves an unreachable Redis alone before trying again (0: every request).
    "RATE_LIMIT_RETRY_INTERVAL": 1.0,
    # Send RateLimit-* and X-RateLimit-* headers on the responses of limited routes.
    "RATE_LIMIT_HEADERS": True,
    # Development only: count in each process's memory when that cache is not Redis (W002).
    "RATE_LIMIT_LOCAL_FALLBACK": True,
    # --- Consul discovery (docs/discovery.md) ---
    # Agent address ("host:port", "[v6]:port" or "https://host:port"); None: CONSUL_HTTP_ADDR,
    # else 127.0.0.1:8500.
    "CONSUL_ADDRESS": None,
    # "http" or "https"; None: the address's scheme, else CONSUL_HTTP_SSL, else http.
    "CONSUL_SCHEME": None,
    # ACL token; None: CONSUL_HTTP_TOKEN, else none. An explicit token beats the environment.
    "CONSUL_TOKEN": None,
    # TLS: True, False or a CA bundle path (None: CONSUL_HTTP_SSL_VERIFY, else True); a client
    # certificate (PEM path) and its key if that file does not hold it.
    "CONSUL_VERIFY": None,
    "CONSUL_CERT": None,
    "CONSUL_KEY": None,
    # Datacenter queried when a service names none (None: the agent's own).
    "CONSUL_DATACENTER": None,
    # Seconds to connect to Consul or get an answer (a blocking query adds its wait to it).
    "CONSUL_TIMEOUT": 5.0,
    # Seconds a blocking query may wait for a change (Consul: 300 by default, 600 at most).
    "CONSUL_WAIT": 55.0,
    # Seconds the first request for a service may wait for Consul's first answer, then 503.
    "CONSUL_COLD_START_TIMEOUT": 2.0,
    # Seconds the last good answer is served while Consul fails, then 503.
    "CONSUL_MAX_STALE": 300.0,
    # Back-off after a failed query: doubles from MIN up to MAX seconds, jittered.
    "CONSUL_BACKOFF_MIN": 1.0,
    "CONSUL_BACKOFF_MAX": 30.0,
    # Rate limit of each watch loop: bursts of 2 queries, then one per this many seconds.
    "CONSUL_MIN_QUERY_INTERVAL": 1.0,
}


class GatewaySettings:
    """Attribute access to ``GATEWAY`` merged over :data:`DEFAULTS`, cached until settings change."""

    def __init__(self) -> None:
        self._derived: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, "GATEWAY", None) or {}

    def __getattr__(self, name: str) -> Any:
        """Only reached on a miss: the value is then stored on the instance, so the hot path
        reads a plain attribute from then on."""
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown GATEWAY setting {name!r}")
        value = self.user_settings.get(name, DEFAULTS[name])
        setattr(self, name, value)
        return value

    def derived(self, key: str, build: Callable[[], Any]) -> Any:
        """Cache a value computed from settings (parsed CIDRs, say) until the settings change."""
        try:
            return self._derived[key]
        except KeyError:
            value = self._derived[key] = build()
            return value

    def reload(self) -> None:
        for name in DEFAULTS:
            self.__dict__.pop(name, None)
        self._derived.clear()


gateway_settings = GatewaySettings()


# Settings outside GATEWAY that derived values depend on (the remembered ALLOWED_HOSTS answers).
_ALSO_RELOAD_ON = {"GATEWAY", "ALLOWED_HOSTS", "USE_X_FORWARDED_HOST", "DEBUG"}


def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting in _ALSO_RELOAD_ON:
        gateway_settings.reload()


setting_changed.connect(_reload_on_change)
