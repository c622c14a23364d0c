"""ASGI entry point uvicorn serves for the ASGI rows: the gateway's ASGI shell around Django's.

The twin of :mod:`benchmarks.wsgi`: same settings module, same database and routes; the gateway
answers matched routes on the event loop (``django_gateway.asgi``), Django the rest.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

from django_gateway.asgi import get_asgi_application  # after the settings module

application = get_asgi_application()
