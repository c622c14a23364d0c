"""Whether a request is the gateway's, and what it refuses before any stage: one function for
the middleware (both shells, later) and the route tester.

:func:`admit` canonicalises the path (a path it must refuse is the gateway's 400 only when a
route covers it, probed with encoded slashes kept opaque), matches the route table on the
canonical host, and asks :func:`host_refusal`. Host refusals run after a route matched (a request
no route claims stays Django's, whatever its Host) and before the route's stages. Each answers 400
with problem+json:

- an HTTP/1.1 request without ``Host`` (gunicorn lets it through);
- a Host that is not a host name once normalised (an empty label: ``gw..test``, ``gw.test..``);
- an absolute-form request target (``GET http://a.test/x HTTP/1.1``) whose authority names another
  host than the ``Host`` header: gunicorn and Django route by the header, a proxy in front may
  route by the authority (RFC 9112 §3.2.2), so the two could pick different routes;
- a Host outside ``ALLOWED_HOSTS``, checked by Django's own ``get_host()``.

Everything reads the request's environ (CGI names), which the WSGI server gives and the ASGI
shell builds from its scope, so both shells and the tester ask the same questions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest

from .exceptions import BadRequest, GatewayError, HostMissing
from .hosts import canonical_host, malformed
from .paths import canonical_path, raw_request_path, refusal_probe_path
from .routing import RouteMatch, RouteTable
from .runtime import runtime


@dataclass(slots=True)
class Admission:
    """A request the gateway takes: refused (``refusal`` set) or matched to ``match``."""

    path: str  # the canonical path; the refusal probe when the path itself was refused
    host: str  # canonical
    match: RouteMatch | None  # None when the path was refused (``refusal`` says why)
    refusal: GatewayError | None
    probed_route: str | None = None  # the route that covers a refused path, if any

    @property
    def ours(self) -> bool:
        """Whether the gateway answers (a refused path no route covers is Django's)."""
        return self.match is not None or self.probed_route is not None


def admit(environ: Mapping[str, Any], table: RouteTable) -> Admission | None:
    """The gateway's verdict on the request in ``environ``; ``None`` when no route matches its
    (well-formed) path. A refused path always gets an :class:`Admission`, which says whether it
    is ours."""
    method = environ.get("REQUEST_METHOD") or "GET"
    host = canonical_host(environ.get("HTTP_HOST", ""))
    try:
        raw_path, decoded = raw_request_path(environ)
        path = canonical_path(raw_path, decoded=decoded)
    except BadRequest as error:
        # Refuse it only if it is ours: Django keeps its own answer for its own URLs.
        probe = refusal_probe_path(environ)
        covering = table.match(method, host, probe, environ)
        return Admission(probe, host, None, error, covering.route.name if covering else None)
    match = table.match(method, host, path, environ)
    if match is None:
        return None
    return Admission(path, host, match, host_refusal(environ, host))


def host_refusal(environ: Mapping[str, Any], host: str) -> GatewayError | None:
    """Why the gateway refuses this request's Host, or ``None``; ``host`` is canonical."""
    if not host:
        return HostMissing() if environ.get("SERVER_PROTOCOL") == "HTTP/1.1" else None
    if malformed(host):
        return BadRequest("The Host header is not a valid host name.")
    authority = _absolute_form_authority(environ)
    if authority is not None and canonical_host(authority) != host:
        return BadRequest("The request target names another host than the Host header.")
    if not _host_allowed(environ):
        return BadRequest("The Host header is not in ALLOWED_HOSTS.")
    return None


def _absolute_form_authority(environ: Mapping[str, Any]) -> str | None:
    """The authority of an absolute-form request target, or ``None`` for the usual origin form."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    if not raw[:8].lower().startswith(("http://", "https://")):
        return None
    rest = raw.partition("://")[2]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i != -1), default=len(rest))
    return rest[:end].rpartition("@")[2]  # userinfo is not part of the host


def _host_allowed(environ: Mapping[str, Any]) -> bool:
    """Django's own ``get_host()`` check, remembered per Host value (in the runtime) until
    settings change.

    The check walks ``ALLOWED_HOSTS`` with pattern matching on every call; a gateway sees the same
    few host names millions of times. Only accepted values are remembered, and only so many.
    """
    key = (environ.get("HTTP_HOST"), environ.get("HTTP_X_FORWARDED_HOST"))
    if key in runtime.allowed_hosts_seen:
        return True
    request = HttpRequest()  # only for a Host value not seen yet: Django's rule, not a copy
    request.META = dict(environ)
    try:
        request.get_host()
    except DisallowedHost:
        return False
    runtime.remember_allowed_host(key)
    return True
