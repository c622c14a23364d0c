"""Settings for the django-gateway example project: a Django site that is also an API gateway.

Everything here is for a local demo (DEBUG, a SQLite file, a published secret key). The parts to
copy into a real project are INSTALLED_APPS, the MIDDLEWARE order and the GATEWAY block; read the
CACHES comment before copying that one.
"""

import os
from pathlib import Path

# example_project/ (the directory holding manage.py).
BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "django-insecure-example-project-only-never-use-this-key"
DEBUG = True
# ".localhost" is localhost and every name under it, so host-based routes such as
# "echo.localhost" work too: ALLOWED_HOSTS applies to proxied requests as well.
ALLOWED_HOSTS = [".localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_gateway",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Right after SecurityMiddleware: proxied requests must not be read, answered or rewritten by
    # the middleware below, which is there for the project's own views (check django_gateway.E003).
    "django_gateway.middleware.GatewayMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# A SQLite file next to manage.py; EXAMPLE_DB_PATH points elsewhere (the tests use a temp file).
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB_PATH") or BASE_DIR / "db.sqlite3",
    }
}

# A per-process cache. The gateway keeps its configuration version in GATEWAY["CACHE_ALIAS"]
# when that cache is shared (Redis, Memcached); with a per-process cache like this one it polls a
# row in the database instead, which every process can see too. That is what check
# django_gateway.W001 warns about: harmless for this one-process demo (an edit made in another
# process, e.g. `manage.py shell`, still goes live within CONFIG_POLL_INTERVAL), but in production
# use Redis (django-redis) and do not silence it.
# For the same reason rate limits count in this process's memory (check W002, and the
# RATE_LIMIT_LOCAL_FALLBACK setting): exact for one process, N times the limit for N processes.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
SILENCED_SYSTEM_CHECKS = ["django_gateway.W001", "django_gateway.W002"]

# Every key is optional; these are the defaults except where a comment says otherwise.
# docs/settings.md lists them all.
GATEWAY = {
    # How often each process checks for configuration changes (admin edits), in seconds.
    "CONFIG_POLL_INTERVAL": 1.0,
    # The cache holding the shared configuration version (see CACHES above).
    "CACHE_ALIAS": "default",
    # Reverse proxies in front of the gateway whose X-Forwarded-* headers are believed.
    "TRUSTED_PROXIES": [],
    # Largest request body proxied, in bytes; routes may override it. (Default: 10 MiB.)
    "MAX_BODY_SIZE": 5 * 1024 * 1024,
    # Passive health: eject an instance after this many consecutive failures, for this long.
    "EJECT_AFTER_FAILURES": 3,
    "EJECT_COOLDOWN": 10.0,
    # Rewrite redirects that point at the upstream's own origin so clients stay on the gateway.
    "REWRITE_LOCATION": True,
    # One line per proxied request on the "django_gateway.access" logger; LOGGING below is what
    # makes it visible (Django configures no handler for it).
    "ACCESS_LOG": True,
}

# The gateway's loggers, access log included, to the console. Without a block like this one the
# access log (INFO records) goes nowhere: Django's default logging configures only the "django"
# loggers, and Python's last-resort handler prints warnings and errors alone.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(asctime)s] %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django_gateway": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
