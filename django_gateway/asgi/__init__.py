"""The ASGI shell: ``GatewayASGIMiddleware`` around any ASGI app, or around Django's.

In ``project/asgi.py``::

    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

    from django_gateway.asgi import get_asgi_application

    application = get_asgi_application()

then ``uvicorn project.asgi:application`` (docs/asgi.md has the deployment we recommend). To wrap
another ASGI app, set Django up first (``django.setup()``), then
``from django_gateway.asgi import GatewayASGIMiddleware``.

This module imports nothing of the gateway at import time (the name is resolved on first use):
the shell's modules import models, which Django allows only once it is set up.
"""

from __future__ import annotations

from typing import Any, cast

import django
from django.core.handlers.asgi import ASGIHandler

__all__ = ["GatewayASGIMiddleware", "get_asgi_application"]


def get_asgi_application() -> Any:
    """Django's ASGI application wrapped by the gateway; sets Django up first, as
    ``django.core.asgi.get_asgi_application`` does."""
    django.setup(set_prefix=False)
    from .middleware import GatewayASGIMiddleware

    # Django types receive/send with Mapping messages; the shell's are dicts (cast only).
    return GatewayASGIMiddleware(cast(Any, ASGIHandler()))


def __getattr__(name: str) -> Any:
    """``GatewayASGIMiddleware``, imported once Django is set up (PEP 562)."""
    if name == "GatewayASGIMiddleware":
        from .middleware import GatewayASGIMiddleware

        return GatewayASGIMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
