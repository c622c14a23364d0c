"""The py-consul client every Consul caller in the gateway uses: :func:`consul_client`.

Where each connection setting comes from, first match wins (docs/discovery.md#connecting):

=========== ======================================================================================
address     ``CONSUL_ADDRESS``; else the ``CONSUL_HTTP_ADDR`` environment variable; else
            ``127.0.0.1:8500``. Either may be ``host:port``, ``[v6]:port`` or
            ``scheme://host:port``.
scheme      ``CONSUL_SCHEME``; else a scheme written in ``CONSUL_ADDRESS``; else
            ``CONSUL_HTTP_SSL`` (``true`` → https, anything else → http); else a scheme written
            in ``CONSUL_HTTP_ADDR``; else http.
verify      ``CONSUL_VERIFY`` (True, False or a CA bundle path); else ``CONSUL_HTTP_SSL_VERIFY``
            (``false`` turns verification off); else True.
token       ``CONSUL_TOKEN``; else ``CONSUL_HTTP_TOKEN``; else none (the anonymous token).
=========== ======================================================================================

The address and scheme are resolved here rather than by py-consul: py-consul reads
``CONSUL_HTTP_ADDR`` only when no host is given, lets a scheme in it override an explicit
``scheme=``, and loses the brackets of an IPv6 address. Its worst surprise is the token: it sets
``self.token = os.getenv("CONSUL_HTTP_TOKEN", token)``, so the environment beats an explicit
``token=`` (CONSUL_FACTS §2.2). The token is therefore set on the client after construction.

:func:`explain_error` is the one place a failed Consul call (connection, timeout, TLS, an HTTP
error, a refused token, an answer that is not Consul's) becomes a sentence a user can act on: it
names the address and scheme tried and the setting or variable that chose them, from
:func:`consul_address`, which resolves them for the client too, so the two never disagree.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from http.client import RemoteDisconnected
from typing import TypedDict
from urllib.parse import urlsplit

import consul
import requests
from django.core.exceptions import ImproperlyConfigured

from ..conf import gateway_settings

DEFAULT_ADDRESS = "127.0.0.1:8500"
ADDRESS_SETTING = "GATEWAY['CONSUL_ADDRESS']"


def split_address(address: str, setting: str) -> tuple[str, int, str | None]:
    """``(host, port, scheme or None)`` from ``host[:port]``, ``[v6][:port]`` or a URL; the host
    comes back in the form a URL needs (IPv6 in brackets)."""
    text = address.strip()
    parts = urlsplit(text if "//" in text else f"//{text}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or parts.path not in ("", "/") or parts.query or parts.username:
        raise ImproperlyConfigured(
            f"{setting} {address!r} is not host:port, [IPv6]:port or scheme://host:port."
        )
    if ":" in host:
        host = f"[{host}]"
    return host, port or 8500, parts.scheme.lower() or None


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    return None if not value else value.strip().lower() == "true"


@dataclass(frozen=True, slots=True)
class ConsulAddress:
    """Where the gateway reaches Consul, and which setting chose the address and the scheme (for
    error messages a user can act on: :func:`explain_error`)."""

    host: str  # IPv6 in brackets
    port: int
    scheme: str
    address_from: str  # "address from GATEWAY['CONSUL_ADDRESS']", ...
    scheme_from: str  # "by default", "from GATEWAY['CONSUL_SCHEME']", ...

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"Consul at {self.url} ({self.address_from}; {self.scheme} {self.scheme_from})"


def consul_address() -> ConsulAddress:
    """The address and scheme, resolved as the module docstring says."""
    explicit = gateway_settings.CONSUL_ADDRESS
    from_env = os.environ.get("CONSUL_HTTP_ADDR")
    env_scheme = scheme_in_address = None
    if explicit:
        host, port, scheme_in_address = split_address(explicit, ADDRESS_SETTING)
        address_from = f"address from {ADDRESS_SETTING}"
    elif from_env:
        host, port, env_scheme = split_address(from_env, "CONSUL_HTTP_ADDR")
        address_from = "address from the CONSUL_HTTP_ADDR environment variable"
    else:
        host, port, _ = split_address(DEFAULT_ADDRESS, "the default address")
        address_from = f"the default address: neither {ADDRESS_SETTING} nor CONSUL_HTTP_ADDR is set"
    ssl = _env_flag("CONSUL_HTTP_SSL")
    scheme, scheme_from = next(
        (scheme, origin)
        for scheme, origin in (
            (gateway_settings.CONSUL_SCHEME, "from GATEWAY['CONSUL_SCHEME']"),
            (scheme_in_address, f"from the scheme in {ADDRESS_SETTING}"),
            (None if ssl is None else ("https" if ssl else "http"), "from CONSUL_HTTP_SSL"),
            (env_scheme, "from the scheme in CONSUL_HTTP_ADDR"),
            ("http", "by default"),
        )
        if scheme
    )
    if scheme not in ("http", "https"):
        raise ImproperlyConfigured(f"The Consul scheme must be http or https, not {scheme!r}.")
    return ConsulAddress(host, port, scheme, address_from, scheme_from)


class ConnectionSettings(TypedDict):
    """The keyword arguments of py-consul's ``Consul`` the gateway sets."""

    host: str
    port: int
    scheme: str
    verify: bool | str  # a str is a CA bundle path
    cert: str | tuple[str, str] | None  # a file with both, or (certificate, key)
    dc: str | None
    connections_timeout: float


def connection_settings() -> ConnectionSettings:
    """The keyword arguments :func:`consul_client` passes, resolved as the module docstring says
    (without the token, which is kept out of anything that might be logged)."""
    address = consul_address()
    verify = gateway_settings.CONSUL_VERIFY
    if verify is None:
        env_verify = _env_flag("CONSUL_HTTP_SSL_VERIFY")
        verify = True if env_verify is None else env_verify
    elif not isinstance(verify, bool | str) or verify == "":
        raise ImproperlyConfigured(
            "GATEWAY['CONSUL_VERIFY'] must be True, False, a CA bundle path or None."
        )
    cert_file, key_file = gateway_settings.CONSUL_CERT, gateway_settings.CONSUL_KEY
    cert = (cert_file, key_file) if cert_file and key_file else cert_file
    return {
        "host": address.host,
        "port": address.port,
        "scheme": address.scheme,
        "verify": verify,
        "cert": cert,
        "dc": gateway_settings.CONSUL_DATACENTER or None,
        "connections_timeout": float(gateway_settings.CONSUL_TIMEOUT),
    }


def consul_token() -> str | None:
    return gateway_settings.CONSUL_TOKEN or os.environ.get("CONSUL_HTTP_TOKEN") or None


def consul_client() -> consul.Consul:
    """A new py-consul client configured from ``GATEWAY`` and the ``CONSUL_HTTP_*`` environment.

    Raises :class:`~django.core.exceptions.ImproperlyConfigured` for an unusable address, scheme
    or ``CONSUL_VERIFY``. The client holds a ``requests`` session: keep it in one thread.
    """
    client = consul.Consul(**connection_settings())
    client.token = consul_token()  # after construction: py-consul lets the environment win
    return client


# --- errors a user can act on -------------------------------------------------------------------

#: What the gateway's token needs (docs/discovery.md#when-consul-fails).
_TOKEN_NEEDS = "service:read and node:read"


def _token_origin() -> str:
    if gateway_settings.CONSUL_TOKEN:
        return "The token comes from GATEWAY['CONSUL_TOKEN']"
    if os.environ.get("CONSUL_HTTP_TOKEN"):
        return "The token comes from the CONSUL_HTTP_TOKEN environment variable"
    return (
        "No token is set (neither GATEWAY['CONSUL_TOKEN'] nor CONSUL_HTTP_TOKEN), so Consul used "
        "its anonymous token"
    )


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error under requests' and urllib3's wrappers (``ConnectionError`` →
    ``MaxRetryError.reason`` → ``NewConnectionError`` → ``ConnectionRefusedError``)."""
    seen = {id(exc)}
    while True:
        candidates = (getattr(exc, "reason", None), *exc.args, exc.__cause__)
        inner = next((c for c in candidates if isinstance(c, BaseException)), None)
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _transport_reason(exc: BaseException, address: ConsulAddress) -> str:
    cause = _root_cause(exc)
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return f"the host name {address.host} does not resolve"
    if isinstance(cause, RemoteDisconnected):
        return "Consul closed the connection without answering"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[:1].lower() + cause.strerror[1:]
    return _clip(str(cause)) or type(cause).__name__


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _http_error(exc: consul.ConsulException, where: ConsulAddress) -> str:
    """py-consul raises ``ConsulException("<status> <body>")`` for 4xx and 5xx answers, except
    401/403/404 whose text is the body alone."""
    code, _, body = str(exc).partition(" ")
    if not (code.isdigit() and len(code) == 3):
        code, body = "", str(exc)
    answer = _clip(f"{code} {body}".strip())
    if code.startswith("5"):
        return (
            f"{where} answered {answer}: the agent is reachable but could not serve the "
            "request. See the Consul agent's log."
        )
    if "HTTPS server" in body:
        return (
            f"{where} answered {answer}: it serves https. Set GATEWAY['CONSUL_SCHEME'] to "
            "'https' or write https:// in the address."
        )
    return f"{where} refused the request: {answer}."


def explain_error(exc: BaseException) -> str:
    """One sentence a user can act on for a failed Consul call: what was tried (address and
    scheme), which setting or environment variable chose it, and what to change.

    Every front end shows this text (``gateway_sync_services``, the admin's "Sync from Consul
    now", the live-instance panel, logs) instead of the raw requests/urllib3 text such as
    ``HTTPConnectionPool(host=..., port=...): Max retries exceeded``. The token itself never
    appears, only where it came from.
    """
    if isinstance(exc, ImproperlyConfigured):
        return str(exc)  # it already names the setting
    try:
        where = consul_address()
    except ImproperlyConfigured as unusable:
        return str(unusable)
    timeout = f"GATEWAY['CONSUL_TIMEOUT'] is {float(gateway_settings.CONSUL_TIMEOUT):g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"TLS with {where} failed: {_transport_reason(exc, where)}. If the agent serves plain "
            "http, use http; if its certificate is not trusted, set GATEWAY['CONSUL_VERIFY'] to "
            "its CA bundle."
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return (
            f"{where} did not answer in time ({timeout}). Check that this is the HTTP port of "
            "a Consul agent and that no firewall drops the traffic, or raise "
            "GATEWAY['CONSUL_TIMEOUT']."
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        return (
            f"Cannot connect to {where}: {_transport_reason(exc, where)}. Check that a Consul "
            f"agent listens there, or set {ADDRESS_SETTING} or the CONSUL_HTTP_ADDR environment "
            "variable to its address."
        )
    if isinstance(exc, consul.ACLPermissionDenied | consul.ACLDisabled):
        status = 403 if isinstance(exc, consul.ACLPermissionDenied) else 401
        return (
            f"{where} refused the ACL token: {status} {_clip(str(exc))}. {_token_origin()}; "
            f"set GATEWAY['CONSUL_TOKEN'] or CONSUL_HTTP_TOKEN to a token with {_TOKEN_NEEDS}."
        )
    if isinstance(exc, consul.ConsulException):
        if isinstance(exc, consul.NotFound) or "index header" in str(exc):
            return _not_consul(where, exc)
        return _http_error(exc, where)
    if isinstance(exc, ValueError):  # an answer that is not Consul's JSON
        return _not_consul(where, exc)
    failure = f"{type(exc).__name__}: {_clip(str(exc))}"
    return f"{where} failed: {failure}" if isinstance(exc, requests.RequestException) else failure


def _not_consul(where: ConsulAddress, exc: BaseException) -> str:
    return (
        f"{where} did not answer like a Consul agent ({_clip(str(exc), 100)}). Check that the "
        "address is the HTTP API port of a Consul agent (8500, or 8501 for https)."
    )
