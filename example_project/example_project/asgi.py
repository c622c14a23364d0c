"""ASGI entry point: the gateway serves proxied routes on the event loop, Django the rest.

uvicorn --app-dir example_project example_project.asgi:application --loop uvloop --http httptools
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

from django_gateway.asgi import get_asgi_application

application = get_asgi_application()
