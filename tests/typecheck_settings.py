"""Settings the type checker loads (django-stubs imports them to learn the models).

``tests.settings`` probes Redis and, under ``GATEWAY_TEST_REQUIRE_SERVICES=1``, exits without it;
type checking needs no services, so it reads this module instead: the same apps, no I/O.
"""

from tests.installed_apps import INSTALLED_APPS  # noqa: F401 (a setting Django reads)

SECRET_KEY = "typecheck-only-not-secret"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
