"""URLs of the benchmark project: the bare view and django-revproxy mounted on the same upstream.

The gateway needs no URL: its route (``/gw`` → the upstream, prefix stripped) lives in the database
and is matched by the middleware before URL resolution.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path, re_path
from revproxy.views import ProxyView

from .payload import BODY


def bare(request: HttpRequest) -> HttpResponse:
    """The floor: the same 1 KiB the upstream serves, produced by Django itself."""
    return HttpResponse(BODY, content_type="text/plain")


urlpatterns = [
    path("bare", bare),
    re_path(r"^revproxy/(?P<path>.*)$", ProxyView.as_view(upstream=settings.UPSTREAM_URL + "/")),
]
