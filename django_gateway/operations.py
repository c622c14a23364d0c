"""Operations shared by the admin, the management commands and (later) the REST API.

Each front end stays thin: it parses its input, calls one function here, and presents the result.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .admission import admit
from .auth.key_store import generate_key
from .consul_sync.sync import SyncPlan, read_catalog, sync_services
from .discovery.client import consul_client, explain_error
from .models import APIKey, Consumer
from .paths import canonical_path, raw_request_path
from .proxy.pool import Endpoint
from .revision import bump_revision
from .route_tester import Explanation, explain
from .routing import RouteTable
from .snapshot import build_snapshot

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token: methods, header names


def bulk_update(queryset: QuerySet[Any], **values: Any) -> int:
    """``queryset.update(**values)``, bumping the configuration version on commit: bulk
    updates send no signals, so every process would otherwise keep the old snapshot."""
    with transaction.atomic():
        count = queryset.update(**values)
        if count:
            transaction.on_commit(bump_revision, robust=True)
    return count


def set_enabled(queryset: QuerySet[Any], enabled: bool) -> int:
    """Enable or disable many rows at once."""
    return bulk_update(queryset, enabled=enabled)


# --- API keys (admin actions, gateway_issue_key, later the API). ------------------------------


def issue_key(
    consumer: Consumer, *, name: str = "", expires_at: datetime | None = None
) -> tuple[APIKey, str]:
    """Create a key for ``consumer``; returns the row and the plaintext, which exists only here.

    Only the prefix and hash are stored, so the caller must show the plaintext now or never.
    Saving the row bumps the configuration version (a signal), like any configuration change.
    """
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError("The expiry date must be in the future.")
    if len(name) > APIKey.NAME_MAX_LENGTH:
        raise ValidationError("The key name is too long.")
    for _attempt in range(3):
        plaintext, prefix, key_hash = generate_key()
        try:
            with transaction.atomic():
                key = APIKey.objects.create(
                    consumer=consumer,
                    name=name,
                    prefix=prefix,
                    key_hash=key_hash,
                    expires_at=expires_at,
                )
        except IntegrityError:
            # 60 random bits make a prefix collision a curiosity, but it must not be a 500.
            if not APIKey.objects.filter(prefix=prefix).exists():
                raise
            continue
        return key, plaintext
    raise RuntimeError("Could not draw an unused API key prefix.")


def revoke_keys(queryset: QuerySet[APIKey]) -> int:
    """Revoke the keys not revoked yet; returns how many. Every process refuses them within
    ``CONFIG_POLL_INTERVAL`` (bulk updates send no signals, so the version is bumped here)."""
    return bulk_update(queryset.filter(revoked_at__isnull=True), revoked_at=timezone.now())


# --- Consul sync (gateway_sync_services, the admin's "Sync from Consul now"). ------------------


class ConsulSyncError(Exception):
    """Consul's catalog could not be read; the message says what was tried, which setting or
    environment variable chose it, and what to change (:func:`~.discovery.client.explain_error`).
    """


def sync_from_consul(
    *, tags: Iterable[str] = (), datacenter: str = "", prune: bool = False, dry_run: bool = False
) -> SyncPlan:
    """Read Consul's catalog and sync it as ``gateway_sync_services`` does; a Consul that cannot
    be read raises :class:`ConsulSyncError` and nothing is written. The command and the admin
    both show that error's text, so a user sees the same sentence in both."""
    try:
        client = consul_client()
        try:
            catalog = read_catalog(client, tags=tags, datacenter=datacenter)
        finally:
            client.http.session.close()
    except Exception as exc:
        raise ConsulSyncError(f"Sync from Consul failed: {explain_error(exc)}") from exc
    return sync_services(catalog, datacenter=datacenter, prune=prune, dry_run=dry_run)


# --- Route listing and the route tester (gateway_routes, gateway_test_route, later the API). ----


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One (host, path) entry of the compiled table, in the order the matcher considers it."""

    host: str  # "*" for routes without hosts
    path: str
    methods: tuple[str, ...]  # empty: any method
    headers: dict[str, list[str]]
    priority: int
    route: str
    service: str
    targets: tuple[str, ...]  # "http://10.0.0.5:8080/v1": origin plus the service's base path
    strip_path: bool
    preserve_host: bool

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def route_rows(table: RouteTable | None = None) -> list[RouteRow]:
    """The compiled route table, fresh from the database unless a table is given."""
    table = table if table is not None else build_snapshot().routes
    rows = []
    for host, path, route in table.ordered_entries():
        service = route.service
        rows.append(
            RouteRow(
                host=host,
                path=path,
                methods=tuple(sorted(route.methods)),
                headers={name: sorted(values) for name, values in route.headers},
                priority=route.priority,
                route=route.name,
                service=service.name,
                targets=tuple(
                    Endpoint(service.protocol, t.host, t.port).origin + service.path
                    for t in service.targets
                ),
                strip_path=route.strip_path,
                preserve_host=route.preserve_host,
            )
        )
    return rows


class InvalidRequest(ValueError):
    """Route-tester input that is not a request the gateway could receive (exit 2, or a 400)."""


class InvalidPath(InvalidRequest):
    """A path the gateway refuses with 400 when a route matches it (``%2F``, NUL, CR/LF...).

    ``decoded_route`` names the route that matches ``decoded_path`` (the middleware's probe, with
    encoded slashes kept opaque), if any: the middleware answers 400 only then and otherwise leaves
    the request to Django.
    """

    def __init__(self, detail: str, decoded_path: str, decoded_route: str | None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.decoded_path = decoded_path
        self.decoded_route = decoded_route


def request_environ(
    method: str, url: str, headers: Iterable[str] = (), *, remote_addr: str = "127.0.0.1"
) -> dict[str, Any]:
    """The WSGI environ gunicorn would build for ``METHOD URL`` with ``Name: value`` headers.

    ``url`` is absolute (``https://api.example.com/x?y``) or a path with a ``Host`` header. An
    explicit ``Host`` header wins over the URL's authority, as it does for the gateway, which routes
    on ``HTTP_HOST``. Repeated headers are joined with "," like gunicorn joins them.
    """
    method = method.strip().upper()
    if not _TOKEN.match(method):
        raise InvalidRequest(f"{method!r} is not an HTTP method.")
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        scheme, authority = parts.scheme, parts.netloc
    elif url.startswith("/") and not url.startswith("//"):
        scheme, authority = "http", ""
    else:
        raise InvalidRequest(f"{url!r} is neither an http(s) URL nor a path starting with '/'.")
    if "@" in authority:
        raise InvalidRequest("URLs with user information are not sent by HTTP clients.")
    raw_path = parts.path or "/"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "RAW_URI": raw_path + ("?" + parts.query if parts.query else ""),
        "QUERY_STRING": parts.query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": remote_addr,
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(b""),
        "wsgi.input_terminated": True,  # gunicorn decodes chunked input and says so
    }
    for line in headers:
        name, sep, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not _TOKEN.match(name) or any(c in value for c in "\r\n\x00"):
            raise InvalidRequest(f"{line!r} is not a header line like 'Name: value'.")
        if "_" in name:  # X_A and X-A are one WSGI key; gunicorn drops such headers
            raise InvalidRequest(f"Header name {name!r} has '_', which WSGI cannot tell from '-'.")
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    if "HTTP_HOST" not in environ:
        if not authority:
            raise InvalidRequest("Give an absolute URL or a Host header (-H 'Host: name').")
        environ["HTTP_HOST"] = authority
    if not environ["HTTP_HOST"] or "," in environ["HTTP_HOST"]:
        raise InvalidRequest("A request carries exactly one non-empty Host header.")
    name, sep, port = environ["HTTP_HOST"].rpartition(":")
    if not sep or not port.isdigit():  # no port ("[::1]" included)
        name, port = environ["HTTP_HOST"], ""
    environ["SERVER_NAME"] = name
    environ["SERVER_PORT"] = port or ("443" if scheme == "https" else "80")
    return environ


def explain_request(
    method: str,
    url: str,
    headers: Iterable[str] = (),
    *,
    remote_addr: str = "127.0.0.1",
    table: RouteTable | None = None,
    consumer: str | None = None,
) -> Explanation:
    """Which route takes ``METHOD URL``, why the others do not, and what would go upstream.

    The path is canonicalised exactly as the middleware does it; a path it would refuse raises
    :class:`InvalidPath`. ``table`` defaults to one built fresh from the database. ``consumer``
    (a username) shows the rate limits as they count that consumer, its plan included.
    """
    environ = request_environ(method, url, headers, remote_addr=remote_addr)
    snapshot = build_snapshot() if table is None or consumer else None
    if table is None:
        assert snapshot is not None
        table = snapshot.routes
    consumer_config = None
    if consumer and snapshot is not None:
        named = (c for c in snapshot.consumers.values() if c.username == consumer)
        consumer_config = next(named, None)
        if consumer_config is None:
            raise InvalidRequest(f"No enabled consumer is named {consumer!r}.")
    admission = admit(environ, table)  # the middleware's own verdict
    if admission is not None and admission.match is None:
        assert admission.refusal is not None
        raise InvalidPath(admission.refusal.detail, admission.path, admission.probed_route)
    method, host = environ["REQUEST_METHOD"], environ["HTTP_HOST"]
    if admission is not None:
        path = admission.path
    else:  # no route: the explanation still says why each one lost
        raw_path, decoded = raw_request_path(environ)
        path = canonical_path(raw_path, decoded=decoded)
    return explain(table, method, host, path, environ, consumer_config)
