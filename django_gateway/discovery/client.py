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
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import consul
from django.core.exceptions import ImproperlyConfigured

from ..conf import gateway_settings

DEFAULT_ADDRESS = "127.0.0.1:8500"


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


def connection_settings() -> dict[str, object]:
    """The keyword arguments :func:`consul_client` passes, resolved as the module docstring says
    (without the token, which is kept out of anything that might be logged)."""
    explicit = gateway_settings.CONSUL_ADDRESS
    from_env = os.environ.get("CONSUL_HTTP_ADDR")
    if explicit:
        host, port, scheme_in_address = split_address(explicit, "GATEWAY['CONSUL_ADDRESS']")
        env_scheme = None
    else:
        host, port, env_scheme = split_address(from_env or DEFAULT_ADDRESS, "CONSUL_HTTP_ADDR")
        scheme_in_address = None
    ssl = _env_flag("CONSUL_HTTP_SSL")
    scheme = (
        gateway_settings.CONSUL_SCHEME
        or scheme_in_address
        or (None if ssl is None else ("https" if ssl else "http"))
        or env_scheme
        or "http"
    )
    if scheme not in ("http", "https"):
        raise ImproperlyConfigured(f"The Consul scheme must be http or https, not {scheme!r}.")
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
        "host": host,
        "port": port,
        "scheme": scheme,
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
    client = consul.Consul(**connection_settings())  # type: ignore[arg-type]
    client.token = consul_token()  # after construction: py-consul lets the environment win
    return client
