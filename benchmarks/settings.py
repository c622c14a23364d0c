"""Django settings for the benchmark project: one module, the variants chosen by environment.

``BENCH_VARIANT`` picks the middleware: ``bare`` and ``revproxy`` run SecurityMiddleware only (the
floor, and the peer as its users would mount it); ``gateway`` adds GatewayMiddleware right after it,
as ``docs`` recommend. ``asgi`` (served through ``benchmarks.asgi``) runs SecurityMiddleware only
too: there the gateway is the ASGI shell around Django, which answers routed requests before any
middleware. Everything else -- apps, URLs, database, cache, logging -- is identical, so the variants
differ only in what serves the request. :mod:`benchmarks.run` sets the variables.
"""

from __future__ import annotations

import os
import tempfile

VARIANT = os.environ.get("BENCH_VARIANT", "bare")
UPSTREAM_URL = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:8080")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "")

SECRET_KEY = "benchmark-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "benchmarks.urls"
WSGI_APPLICATION = "benchmarks.wsgi.application"
ASGI_APPLICATION = "benchmarks.asgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django.contrib.auth: a gateway Consumer may link to a Django user (no auth middleware runs).
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "revproxy",
    "django_gateway",
]

MIDDLEWARE = ["django.middleware.security.SecurityMiddleware"]
if VARIANT == "gateway":
    MIDDLEWARE.append("django_gateway.middleware.GatewayMiddleware")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DB_PATH")
        or os.path.join(tempfile.gettempdir(), "django-gateway-bench.sqlite3"),
    }
}

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("BENCH_CACHE_PREFIX", "gwbench"),
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    SILENCED_SYSTEM_CHECKS: list[str] = []
else:
    # Per-process cache: the gateway then polls the configuration revision from SQLite once a second.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SILENCED_SYSTEM_CHECKS = ["django_gateway.W001", "django_gateway.W002"]

# Without Redis the rate-limited route counts in process memory (one worker: still exact).
GATEWAY = {"ACCESS_LOG": False, "RATE_LIMIT_LOCAL_FALLBACK": not REDIS_URL}
# The rate-limit targets: a private redis-server (benchmarks/redis_server.py) over TCP or a Unix
# socket, so the limiter's transport is the only difference between them.
if os.environ.get("BENCH_RATELIMIT_URL"):
    CACHES["limits"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ["BENCH_RATELIMIT_URL"],
    }
    GATEWAY["RATE_LIMIT_CACHE_ALIAS"] = "limits"
    GATEWAY["RATE_LIMIT_LOCAL_FALLBACK"] = False
# benchmarks/flapping.py: the Consul double its "flap" service is discovered from.
if os.environ.get("BENCH_CONSUL_ADDRESS"):
    GATEWAY["CONSUL_ADDRESS"] = os.environ["BENCH_CONSUL_ADDRESS"]

# Nothing is logged on the request path of any variant: the benchmark measures proxying, not
# logging. (urllib3, under django-revproxy, would otherwise warn on every discarded pooled connection.)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "ERROR"},
    "loggers": {
        "django_gateway.access": {"level": "WARNING"},
        "urllib3": {"level": "ERROR"},
        "revproxy": {"level": "ERROR"},
    },
}
