"""Turning an upstream response into a Django response without losing anything on the way.

Django keeps response headers in a case-insensitive dict, which would merge repeated headers
(``Set-Cookie`` above all). The first value of each name goes into that dict, so middleware can read
and change it as usual; repeats are kept in order and added back in :meth:`items`, which is what
Django's WSGI and ASGI handlers send.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from .transport import UpstreamResponse


class _RepeatedHeadersMixin:
    repeated_headers: list[tuple[str, str]]

    def items(self):  # type: ignore[no-untyped-def]
        return [*super().items(), *self.repeated_headers]  # type: ignore[misc]


class BufferedProxyResponse(_RepeatedHeadersMixin, HttpResponse):
    """The whole body arrived with the head: sent in one write, connection already back in the pool."""


class StreamingProxyResponse(_RepeatedHeadersMixin, StreamingHttpResponse):
    """The body streams from the upstream as the client reads it."""


def build_response(
    upstream: UpstreamResponse, headers: Iterable[tuple[str, str]], *, head_only: bool
) -> HttpResponseBase:
    response: HttpResponseBase
    if upstream.complete:
        body = upstream.buffered_body()
        # A content type is given only to spare Django working out a default; the store is
        # cleared below and filled with exactly what the upstream sent.
        response = BufferedProxyResponse(body, status=upstream.status, content_type="-")
    else:
        response = StreamingProxyResponse(upstream, status=upstream.status, content_type="-")
    if upstream.reason:
        response.reason_phrase = upstream.reason
    repeated: list[tuple[str, str]] = []
    response.repeated_headers = repeated
    # Written straight into the header store: llhttp already refused names and values that are
    # not valid HTTP, which is what ResponseHeaders.__setitem__ would check again, header by header.
    store = response.headers._store
    store.clear()
    for name, value in headers:
        key = name.lower()
        if key in store:
            repeated.append((name, value))
        else:
            store[key] = (name, value)
    if upstream.complete and not head_only and "content-length" not in store:
        store["content-length"] = ("Content-Length", str(len(body)))
    return response
