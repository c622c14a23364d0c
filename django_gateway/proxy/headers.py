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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class ForwardContext:
    """What the gateway knows about the request that the headers must tell the upstream."""

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


def valid_request_id(value: str | None) -> bool:
    return bool(value) and _REQUEST_ID.match(value) is not None  # type: ignore[arg-type]


def connection_tokens(value: str | None) -> frozenset[str]:
    if not value:
        return frozenset()
    return frozenset(token.strip().lower() for token in value.split(",") if token.strip())


def environ_headers(environ: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """The request headers of a WSGI environ as ``(lower-case name, value)`` pairs."""
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-").lower(), value
    content_type = environ.get("CONTENT_TYPE")
    if content_type:
        yield "content-type", content_type


def _skip_request_header(name: str, dropped: frozenset[str], request_id_header: str) -> bool:
    return (
        name in HOP_BY_HOP
        or name in dropped
        or name in _OWNED
        or name == request_id_header
        or name.startswith(SPOOFABLE_PREFIXES)
    )


def request_headers(
    incoming: Iterable[tuple[str, str]], ctx: ForwardContext
) -> list[tuple[str, str]]:
    """Headers to send upstream, given the client's headers as ``(lower-case name, value)``."""
    incoming = list(incoming)
    dropped = connection_tokens(next((v for n, v in incoming if n == "connection"), None))
    request_id_header = ctx.request_id_header.lower()
    out: list[tuple[str, str]] = [
        ("Host", ctx.host if ctx.preserve_host and ctx.host else ctx.upstream_host)
    ]
    forwarded_for = via = None
    kept_forwarded = set()
    for name, value in incoming:
        if name == "x-forwarded-for":
            forwarded_for = value
        elif name == "via":
            via = value
        elif _skip_request_header(name, dropped, request_id_header):
            continue
        elif name in _FORWARDED:
            if ctx.peer_trusted:
                kept_forwarded.add(name)
                out.append((name, value))
        else:
            out.append((name, value))
    out.append(("X-Forwarded-For", f"{forwarded_for}, {ctx.peer}" if forwarded_for else ctx.peer))
    for name, value in (
        ("x-forwarded-proto", ctx.scheme),
        ("x-forwarded-host", ctx.host),
        ("x-forwarded-port", ctx.port),
        ("x-forwarded-prefix", ctx.prefix),
    ):
        if name not in kept_forwarded and value:
            out.append((name, value))
    out.append(("X-Real-IP", ctx.client_ip))
    out.append((ctx.request_id_header, ctx.request_id))
    if ctx.via:
        out.append(("Via", f"{via}, 1.1 {ctx.via}" if via else f"1.1 {ctx.via}"))
    return out


def response_headers(
    upstream: Iterable[tuple[bytes, bytes]], ctx: ForwardContext, location: LocationRewrite | None
) -> list[tuple[str, str]]:
    """Headers to send the client, given the upstream's raw header pairs."""
    pairs = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in upstream]
    dropped = connection_tokens(
        ", ".join(value for name, value in pairs if name.lower() == "connection")
    )
    out: list[tuple[str, str]] = []
    via = None
    for name, value in pairs:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in dropped:
            continue
        if lower == "via":
            via = value if via is None else f"{via}, {value}"
            continue
        if lower == "location" and location is not None:
            value = location.rewrite(value)
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
