"""Settings for the test suite.

The database is SQLite by default and PostgreSQL with ``GATEWAY_TEST_DB=postgres`` (what CI runs).
The cache is a real Redis (``GATEWAY_TEST_REDIS_URL``, default db 15 on localhost) under a key
prefix unique to the run; without a reachable Redis the suite falls back to a local-memory cache
and says so, unless ``GATEWAY_TEST_REQUIRE_SERVICES=1`` (CI), which makes that an error.
"""

import os
import socket
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlparse

from tests.installed_apps import INSTALLED_APPS  # noqa: F401 (a setting Django reads)

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
REQUIRE_SERVICES = os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django_gateway.middleware.GatewayMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"

# Each run gets its own SQLite file so a gunicorn process started by the tests sees the same data.
_RUN_ID = os.environ.setdefault("GATEWAY_TEST_RUN_ID", uuid.uuid4().hex[:12])
if os.environ.get("GATEWAY_TEST_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("PGDATABASE", "test"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "TEST": {"NAME": f"test_gateway_{_RUN_ID}"},
        }
    }
else:
    _db_file = os.path.join(tempfile.gettempdir(), f"gateway-test-{_RUN_ID}.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _db_file,
            "TEST": {"NAME": _db_file},
        }
    }


def _redis_reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 6379), timeout=0.3):
            return True
    except OSError:
        return False


REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REDIS_AVAILABLE = _redis_reachable(REDIS_URL)
if REDIS_AVAILABLE:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"gwtest-{_RUN_ID}",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
else:
    if REQUIRE_SERVICES:
        sys.exit(f"The test suite needs Redis at {REDIS_URL} (set GATEWAY_TEST_REDIS_URL).")
    print(f"note: no Redis at {REDIS_URL}; using a local-memory cache", file=sys.stderr)
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Without Redis the rate-limit tests run on the in-process engine (same algorithm) instead.
GATEWAY = {"CONFIG_POLL_INTERVAL": 0.2, "RATE_LIMIT_LOCAL_FALLBACK": not REDIS_AVAILABLE}
SILENCED_SYSTEM_CHECKS = ["django_gateway.W001", "django_gateway.W002"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django_gateway": {"handlers": ["null"], "level": "INFO"}},
}

# Fast hashing: admin tests log in often and never need strong hashes.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
