"""WSGI entry point for running the test project under a real server (``gunicorn tests.wsgi``).

The wire tests start gunicorn with this module and the environment of the pytest process, so it
uses the same Redis key prefix (``GATEWAY_TEST_RUN_ID``) and database engine (``GATEWAY_TEST_DB``).
pytest-django connects to a *test* database whose name may differ from ``NAME`` (PostgreSQL,
pytest-xdist suffixes): ``GATEWAY_TEST_DB_NAME`` carries the name it actually uses.
"""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
if os.environ.get("GATEWAY_TEST_DB_NAME"):
    settings.DATABASES["default"]["NAME"] = os.environ["GATEWAY_TEST_DB_NAME"]

application = get_wsgi_application()
