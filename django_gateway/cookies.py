"""Cookies of a request, read from its environ the way Django reads them.

Two stages read one cookie each (a JWT in ``JWT_COOKIE``, the ``hash_on_cookie`` of consistent
hashing), in either shell: neither has an ``HttpRequest``, so the ``Cookie`` header is parsed here
with Django's own parser, only when a stage asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http.cookie import parse_cookie


def request_cookie(environ: Mapping[str, Any], name: str) -> str | None:
    """The value of cookie ``name``, as ``request.COOKIES`` would give it; ``None`` if absent."""
    header = environ.get("HTTP_COOKIE")
    if not header or name not in header:
        return None
    return parse_cookie(header).get(name)
