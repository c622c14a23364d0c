"""Refusals about the request's Host, decided once for the middleware and the route tester.

These run after a route matched (a request no route claims stays Django's, whatever its Host) and
before the route's stages. Each answers 400 with problem+json:

- an HTTP/1.1 request without ``Host`` (gunicorn lets it through);
- a Host that is not a host name once normalised (an empty label: ``gw..test``, ``gw.test..``);
- an absolute-form request target (``GET http://a.test/x HTTP/1.1``) whose authority names another
  host than the ``Host`` header: gunicorn and Django route by the header, a proxy in front may
  route by the authority (RFC 9112 §3.2.2), so the two could pick different routes;
- a Host outside ``ALLOWED_HOSTS``, checked by Django's own ``get_host()``.
"""

from __future__ import annotations

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest

from .exceptions import BadRequest, GatewayError, HostMissing
from .hosts import canonical_host, malformed
from .runtime import runtime


def host_refusal(request: HttpRequest, host: str) -> GatewayError | None:
    """Why the gateway refuses this request's Host, or ``None``; ``host`` is canonical."""
    environ = request.META
    if not host:
        return HostMissing() if environ.get("SERVER_PROTOCOL") == "HTTP/1.1" else None
    if malformed(host):
        return BadRequest("The Host header is not a valid host name.")
    authority = _absolute_form_authority(environ)
    if authority is not None and canonical_host(authority) != host:
        return BadRequest("The request target names another host than the Host header.")
    if not _host_allowed(request):
        return BadRequest("The Host header is not in ALLOWED_HOSTS.")
    return None


def _absolute_form_authority(environ: dict) -> str | None:
    """The authority of an absolute-form request target, or ``None`` for the usual origin form."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    if not raw[:8].lower().startswith(("http://", "https://")):
        return None
    rest = raw.partition("://")[2]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i != -1), default=len(rest))
    return rest[:end].rpartition("@")[2]  # userinfo is not part of the host


def _host_allowed(request: HttpRequest) -> bool:
    """Django's own ``get_host()`` check, remembered per Host value (in the runtime) until
    settings change.

    The check walks ``ALLOWED_HOSTS`` with pattern matching on every call; a gateway sees the same
    few host names millions of times. Only accepted values are remembered, and only so many.
    """
    environ = request.META
    key = (environ.get("HTTP_HOST"), environ.get("HTTP_X_FORWARDED_HOST"))
    if key in runtime.allowed_hosts_seen:
        return True
    try:
        request.get_host()
    except DisallowedHost:
        return False
    runtime.remember_allowed_host(key)
    return True
