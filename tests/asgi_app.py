"""ASGI entry point for running the test project under a real server (``uvicorn tests.asgi_app``).

The twin of ``tests/wsgi.py``: the wire tests start uvicorn with this module and the pytest
process's environment (Redis key prefix, database engine and test database name).
"""

import os

from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
if os.environ.get("GATEWAY_TEST_DB_NAME"):
    settings.DATABASES["default"]["NAME"] = os.environ["GATEWAY_TEST_DB_NAME"]

from django_gateway.asgi import get_asgi_application

application = get_asgi_application()
