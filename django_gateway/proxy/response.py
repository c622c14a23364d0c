"""Turning an upstream response into a Django response without losing anything on the way.

Django keeps response headers in a case-insensitive dict, which would merge repeated headers
(``Set-Cookie`` above all). The first value of each name goes into that dict, so middleware can read
and change it as usual; repeats are kept in order and added back in :meth:`items`, which is what
Django's WSGI and ASGI handlers send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from .headers import bodiless
from .transport import UpstreamResponse


class _RepeatedHeadersMixin(HttpResponseBase):
    repeated_headers: list[tuple[str, str]]

    def items(self) -> list[tuple[str, str]]:
        return [*super().items(), *self.repeated_headers]


class BufferedProxyResponse(_RepeatedHeadersMixin, HttpResponse):
    """The whole body arrived with the head: sent in one write, connection already back in the pool."""


class StreamingProxyResponse(_RepeatedHeadersMixin, StreamingHttpResponse):
    """The body streams from the upstream as the client reads it."""

    #: Called once, when the server closes the response (the body sent, or the client gone).
    on_close: Callable[[], None] | None = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            on_close, self.on_close = self.on_close, None
            if on_close is not None:
                on_close()


def build_response(
    upstream: UpstreamResponse, headers: Iterable[tuple[str, str]], *, head_only: bool
) -> HttpResponseBase:
    response: _RepeatedHeadersMixin
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
    # Written straight into the header store (ResponseHeaders._store, private): llhttp already
    # refused names and values that are not valid HTTP, which ResponseHeaders.__setitem__ would
    # check again header by header. Measured (Django 5.2, CPython 3.11): 10 upstream headers
    # 1.2 µs this way against 8.9 µs through response.headers[name] = value.
    store = response.headers._store
    store.clear()
    for name, value in headers:
        key = name.lower()
        if key in store:
            repeated.append((name, value))
        else:
            store[key] = (name, value)
    if (
        upstream.complete
        and not head_only
        and not bodiless(upstream.status)  # a length would be invented, and wrong
        and "content-length" not in store
    ):
        store["content-length"] = ("Content-Length", str(len(body)))
    return response
