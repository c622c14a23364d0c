"""Header policy, both directions, as pure functions (tested from a table in tests/proxy).

Request side: hop-by-hop headers and every header named in ``Connection`` are dropped; identity
headers the gateway asserts (``X-Consumer-*``, ``X-Credential-*``, ``X-Authenticated-*``) are
removed so clients cannot spoof them; ``Via`` and ``X-Forwarded-For`` are appended to; the other
``X-Forwarded-*`` headers and ``X-Real-IP`` are set by the gateway unless the peer is a trusted proxy
that already set them; ``Host`` is the upstream's unless the route preserves it.

Response side: hop-by-hop headers dropped, ``Via`` appended, ``Location`` pointing at the upstream's
own origin rewritten to the gateway's. Repeated headers (``Set-Cookie``) stay separate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ..config import Identity

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Headers the gateway itself owns on the way upstream; client copies never pass.
_OWNED = frozenset({"host", "via", "x-forwarded-for", "x-real-ip", "expect", "content-length"})
_FORWARDED = ("x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-forwarded-prefix")
SPOOFABLE_PREFIXES = ("x-consumer-", "x-credential-", "x-authenticated-", "x-anonymous-consumer")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:+/=@-]{1,200}$")


@dataclass(slots=True)
class ForwardContext:
    """What the gateway knows about the request that the headers must tell the upstream.

    Built per request, so a plain dataclass: frozen ones initialise markedly slower.
    """

    peer: str  # REMOTE_ADDR, appended to X-Forwarded-For
    client_ip: str  # after TRUSTED_PROXIES
    peer_trusted: bool
    scheme: str  # as the client spoke to us
    host: str  # the client's Host header
    port: str
    prefix: str  # the prefix stripped from the path ("" when nothing was stripped)
    upstream_host: str  # Host header for the upstream ("name" or "name:port")
    preserve_host: bool
    request_id: str
    request_id_header: str
    via: str
    #: Headers asserting who the consumer is (X-Consumer-*, X-Credential-Identifier, ...).
    identity: list[tuple[str, str]] = field(default_factory=list)
    #: Credentials removed before proxying (hide_credentials): header names, and a cookie name.
    hidden_headers: frozenset[str] = frozenset()
    hidden_cookie: str | None = None


def valid_request_id(value: str | None) -> TypeGuard[str]:
    return value is not None and _REQUEST_ID.match(value) is not None


def connection_tokens(value: str | None) -> frozenset[str]:
    if not value:
        return frozenset()
    return frozenset(token.strip().lower() for token in value.split(",") if token.strip())


# What the request side does with a header, by lower-case name; classified once per name.
_PASS, _DROP, _XFF, _VIA, _FORWARDED_KIND = range(5)
_NAME_CACHE_LIMIT = 4096  # header names are client-chosen: remember only so many
_environ_names: dict[str, str] = {}
_kinds: dict[str, int] = {}


def _environ_name(key: str) -> str:
    name = _environ_names.get(key)
    if name is None:
        name = key[5:].replace("_", "-").lower()
        if len(_environ_names) < _NAME_CACHE_LIMIT:
            _environ_names[key] = name
    return name


def _kind(name: str) -> int:
    kind = _kinds.get(name)
    if kind is None:
        if name == "x-forwarded-for":
            kind = _XFF
        elif name == "via":
            kind = _VIA
        elif name in _FORWARDED:
            kind = _FORWARDED_KIND
        elif name in HOP_BY_HOP or name in _OWNED or name.startswith(SPOOFABLE_PREFIXES):
            kind = _DROP
        else:
            kind = _PASS
        if len(_kinds) < _NAME_CACHE_LIMIT:
            _kinds[name] = kind
    return kind


def environ_headers(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The request headers of a WSGI environ as ``(lower-case name, value)`` pairs.

    ``Content-Type`` only travels with a body: some servers (wsgiref) invent one for every request.
    """
    headers = [(_environ_name(key), value) for key, value in environ.items() if key[:5] == "HTTP_"]
    content_type = environ.get("CONTENT_TYPE")
    if content_type and (
        environ.get("CONTENT_LENGTH", "0") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ
    ):
        headers.append(("content-type", content_type))
    return headers


def request_headers(
    incoming: Iterable[tuple[str, str]], ctx: ForwardContext
) -> list[tuple[str, str]]:
    """Headers to send upstream, given the client's headers as ``(lower-case name, value)``."""
    incoming = list(incoming)
    dropped: frozenset[str] = frozenset()
    for name, value in incoming:
        if name == "connection":
            dropped = connection_tokens(value)
    request_id_header = ctx.request_id_header.lower()
    out: list[tuple[str, str]] = [
        ("Host", ctx.host if ctx.preserve_host and ctx.host else ctx.upstream_host)
    ]
    forwarded_for = via = None
    kept_forwarded = set()
    hidden = ctx.hidden_headers
    for name, value in incoming:
        kind = _kind(name)
        if kind == _PASS:
            if name == request_id_header or (dropped and name in dropped):
                continue
            if hidden and name in hidden:
                continue
            if name == "cookie" and ctx.hidden_cookie:
                value = without_cookie(value, ctx.hidden_cookie)
                if not value:
                    continue
            out.append((name, value))
        elif kind == _XFF:
            forwarded_for = value
        elif kind == _VIA:
            via = value
        elif kind == _FORWARDED_KIND and ctx.peer_trusted and name not in dropped:
            kept_forwarded.add(name)
            out.append((name, value))
    out.append(("X-Forwarded-For", f"{forwarded_for}, {ctx.peer}" if forwarded_for else ctx.peer))
    for name, value in (
        ("x-forwarded-proto", ctx.scheme),
        ("x-forwarded-host", ctx.host),
        ("x-forwarded-port", ctx.port),
        ("x-forwarded-prefix", ctx.prefix),
    ):
        if value and name not in kept_forwarded:
            out.append((name, value))
    out.append(("X-Real-IP", ctx.client_ip))
    out.append((ctx.request_id_header, ctx.request_id))
    out.extend(ctx.identity)
    if ctx.via:
        out.append(("Via", f"{via}, 1.1 {ctx.via}" if via else f"1.1 {ctx.via}"))
    elif via:
        out.append(("Via", via))
    return out


def without_cookie(header: str, name: str) -> str:
    """A ``Cookie`` header value without the cookie ``name`` (the others kept as sent)."""
    kept = [part for part in header.split(";") if part.strip().partition("=")[0] != name]
    return ";".join(kept).strip()


def identity_headers(identity: Identity | None) -> list[tuple[str, str]]:
    """What the upstream is told about the consumer (Kong's names); empty when anonymous routes
    let nobody in or the route is open."""
    if identity is None:
        return []
    consumer = identity.consumer
    headers = [("X-Consumer-ID", str(consumer.id)), ("X-Consumer-Username", consumer.username)]
    if consumer.custom_id:
        headers.append(("X-Consumer-Custom-ID", consumer.custom_id))
    if identity.groups:
        headers.append(("X-Consumer-Groups", ", ".join(sorted(identity.groups))))
    if identity.anonymous:
        headers.append(("X-Anonymous-Consumer", "true"))
    else:
        headers.append(("X-Credential-Identifier", identity.credential))
    return headers


def bodiless(status: int) -> bool:
    """A status whose response never has a body or framing headers of its own (RFC 9110 §8.6,
    §15.4.5): 1xx and 204 carry no ``Content-Length``; a 304 may only repeat its 200's."""
    return status < 200 or status == 204 or status == 304


def response_headers(
    upstream: Iterable[tuple[bytes, bytes]],
    ctx: ForwardContext,
    rewrite_location: Callable[[str], str] | None,
) -> list[tuple[str, str]]:
    """Headers to send the client, given the upstream's raw header pairs.

    The upstream's own copy of the request id header is replaced by the gateway's, so the client
    sees exactly one.
    """
    triples = [
        (name.decode("latin-1"), value.decode("latin-1"), name.lower().decode("latin-1"))
        for name, value in upstream
    ]
    dropped: frozenset[str] = frozenset()
    for _, value, lower in triples:
        if lower == "connection":
            dropped = dropped | connection_tokens(value)
    request_id_header = ctx.request_id_header.lower()
    out: list[tuple[str, str]] = []
    via = None
    for name, value, lower in triples:
        if lower in HOP_BY_HOP or lower == request_id_header or (dropped and lower in dropped):
            continue
        if lower == "via":
            via = value if via is None else f"{via}, {value}"
            continue
        if lower == "location" and rewrite_location is not None:
            value = rewrite_location(value)
        out.append((name, value))
    if ctx.via:
        out.append(("Via", f"{via}, 1.1 {ctx.via}" if via else f"1.1 {ctx.via}"))
    elif via:
        out.append(("Via", via))
    out.append((ctx.request_id_header, ctx.request_id))
    return out


@dataclass(frozen=True, slots=True)
class LocationRewrite:
    """Maps ``upstream_origin + upstream_base + rest`` back to ``gateway_origin + client_base + rest``.

    This is what nginx's ``proxy_redirect default`` does: a redirect an upstream issues to itself
    must not send the client around the gateway.
    """

    upstream_origins: tuple[str, ...]  # "http://10.0.0.5:8080" (and the Host we sent, if different)
    upstream_base: str  # the service path the request was forwarded under, e.g. "/v1"
    gateway_origin: str  # "https://api.example.com"
    client_base: str  # the route prefix the client used, e.g. "/orders"

    def rewrite(self, value: str) -> str:
        for origin in self.upstream_origins:
            if value == origin or value.startswith(origin + "/"):
                path = value[len(origin) :] or "/"
                return self.gateway_origin + self._map_path(path)
        if value.startswith("/") and not value.startswith("//"):
            return self._map_path(value)
        return value

    def _map_path(self, path: str) -> str:
        base = self.upstream_base
        if base and not (path == base or path.startswith((base + "/", base + "?"))):
            return path
        rest = path[len(base) :]
        if not rest.startswith("/"):
            rest = "/" + rest if rest else ""
        return (self.client_base + rest) or "/"
