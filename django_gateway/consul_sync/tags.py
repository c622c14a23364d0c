"""The tag grammar ``gateway_sync_services`` reads: ``gateway.*`` tags and Fabio's ``urlprefix-``.

:func:`parse_tags` turns one Consul service's tags into route declarations and problems, never
an exception. The grammar (``docs/consul-sync.md``):

* ``gateway.enable=true`` opts the service's ``gateway.*`` route in (keys are case-insensitive);
  ``gateway.route=/path`` (repeatable: paths), ``gateway.host=name`` (repeatable: hosts),
  ``gateway.methods=GET,POST``, ``gateway.priority=10``, ``gateway.preserve_host=true``,
  ``gateway.strip_prefix=true|false|/path`` declare one route; ``gateway.scheme=http|https``
  sets the service's protocol.
* ``urlprefix-/path`` and ``urlprefix-host/path``, optionally followed by `` strip=/path``
  (Fabio's form, its own opt-in), declare one route each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from django.core.exceptions import ValidationError

from ..models import validation

PREFIX = "gateway."
FABIO_PREFIX = "urlprefix-"
GATEWAY, URLPREFIX = "gateway", "urlprefix"  # RouteSpec.kind
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True)
class RouteSpec:
    """A route one service's tags declare. ``error`` set means it is reported and not written;
    it still holds the paths and hosts it declared when those parsed, so the route already
    synced for them is left as it was rather than disabled."""

    tags: tuple[str, ...]
    paths: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    priority: int = 0
    strip_path: bool = False
    preserve_host: bool = False
    error: str = ""
    kind: str = GATEWAY  # or URLPREFIX: one route per tag

    @property
    def label(self) -> str:
        """How reports name the declaration: its ``urlprefix-`` tag, or ``gateway.* tags``."""
        return repr(self.tags[0]) if self.kind == URLPREFIX else f"{PREFIX}* tags"

    def values(self) -> dict[str, Any]:
        return {
            "paths": list(self.paths),
            "hosts": list(self.hosts),
            "methods": list(self.methods),
            "priority": self.priority,
            "strip_path": self.strip_path,
            "preserve_host": self.preserve_host,
        }


@dataclass(frozen=True)
class Problem:
    kind: str  # "invalid tag", "conflict", "name collision", "invalid route"
    service: str  # the Consul service name
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.service}: {self.detail}"


@dataclass(frozen=True)
class Declaration:
    """What one Consul service's tags ask for."""

    protocol: str | None = None
    routes: tuple[RouteSpec, ...] = ()
    problems: tuple[Problem, ...] = ()


def _bool(value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError("expected true or false")


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError("expected an integer") from None


def _path(value: str) -> str:
    try:
        return validation.route_paths([value])[0]
    except ValidationError as exc:
        raise ValueError(" ".join(exc.messages)) from exc


def _host(value: str) -> str:
    try:
        return validation.host_pattern(value)
    except ValidationError as exc:
        raise ValueError(" ".join(exc.messages)) from exc


def _strip(value: str, paths: Iterable[str]) -> bool:
    """``true``/``false``, or Fabio's ``strip=/path``, which must be the route's own prefix:
    the gateway strips exactly the matched prefix, nothing shorter or longer."""
    if not value.startswith("/"):
        return _bool(value)
    prefix = _path(value)
    if any(p != prefix for p in paths):
        raise ValueError(
            f"strip prefix {prefix} is not the route's path; only that can be stripped"
        )
    return True


def parse_tags(service: str, tags: Iterable[str]) -> Declaration:
    """The routes (and protocol) a service's tags declare; bad tags are problems, not exceptions."""
    problems: list[Problem] = []
    options: dict[str, list[tuple[str, str]]] = {}
    fabio: list[str] = []
    for tag in sorted(set(tags)):
        if tag[: len(PREFIX)].lower() == PREFIX:
            key, sep, value = tag[len(PREFIX) :].partition("=")
            if not sep or not key.strip():
                problems.append(
                    Problem("invalid tag", service, f"{tag!r}: expected {PREFIX}<key>=<value>")
                )
                continue
            options.setdefault(key.strip().lower(), []).append((tag, value.strip()))
        elif tag[: len(FABIO_PREFIX)].lower() == FABIO_PREFIX:
            fabio.append(tag)
    protocol = None
    for tag, value in options.pop("scheme", []):
        if value.lower() in ("http", "https"):
            protocol = value.lower()
        else:
            problems.append(Problem("invalid tag", service, f"{tag!r}: scheme is http or https"))
    routes = []
    enable = options.pop("enable", [])
    try:
        enabled = bool(enable) and all(_bool(value) for _tag, value in enable)
    except ValueError as exc:
        problems.append(Problem("invalid tag", service, f"{enable[0][0]!r}: {exc}"))
        enabled = False
    if enabled:
        routes.append(_gateway_route(service, options, problems))
    elif options:
        ignored = ", ".join(sorted(tag for values in options.values() for tag, _ in values))
        problems.append(Problem("ignored", service, f"{ignored}: no {PREFIX}enable=true tag"))
    routes.extend(_fabio_route(tag) for tag in fabio)
    for spec in routes:
        if spec.error:
            problems.append(Problem("invalid tag", service, spec.error))
    return Declaration(protocol, tuple(routes), tuple(problems))


def _gateway_route(
    service: str, options: dict[str, list[tuple[str, str]]], problems: list[Problem]
) -> RouteSpec:
    """The one route ``gateway.*`` tags declare; a bad tag is dropped (and reported), except a
    strip prefix that cannot be honoured, which makes the whole route an error."""
    parsers: dict[str, Callable[[str], Any]] = {
        "route": _path,
        "host": _host,
        "priority": _int,
        "preserve_host": _bool,
        "methods": lambda v: validation.route_methods(v.split(",")),
    }
    values: dict[str, list[Any]] = {}
    used: list[str] = []
    for key, entries in sorted(options.items()):
        if key == "strip_prefix":
            continue
        parse = parsers.get(key)
        for tag, value in entries:
            if parse is None:
                problems.append(Problem("invalid tag", service, f"{tag!r}: unknown key {key!r}"))
                continue
            try:
                parsed = parse(value)
            except (ValueError, ValidationError) as exc:
                reason = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                problems.append(Problem("invalid tag", service, f"{tag!r}: {reason or 'invalid'}"))
                continue
            values.setdefault(key, []).append(parsed)
            used.append(tag)
    paths = tuple(sorted(set(values.get("route", []))))
    hosts = tuple(sorted(set(values.get("host", []))))
    spec = RouteSpec(
        tags=tuple(sorted(used)),
        paths=paths,
        hosts=hosts,
        methods=tuple(sorted({m for ms in values.get("methods", []) for m in ms})),
        priority=values.get("priority", [0])[-1],
        preserve_host=any(values.get("preserve_host", [])),
    )
    for tag, value in options.get("strip_prefix", []):
        try:
            spec = replace(spec, strip_path=_strip(value, paths), tags=(*spec.tags, tag))
        except ValueError as exc:
            return replace(spec, error=f"{tag!r}: {exc}; route not written")
    if not paths and not hosts:
        return replace(
            spec, error=f"{PREFIX}enable=true without a {PREFIX}route or {PREFIX}host tag"
        )
    return spec


def _fabio_route(tag: str) -> RouteSpec:
    """``urlprefix-/path`` or ``urlprefix-host/path``, optionally followed by `` strip=/path``."""
    spec = RouteSpec(tags=(tag,), kind=URLPREFIX)
    try:
        first, *opts = tag[len(FABIO_PREFIX) :].split() or [""]
        host, slash, rest = first.partition("/")
        if not slash:
            raise ValueError("expected urlprefix-/path or urlprefix-host/path")
        spec = replace(spec, paths=(_path("/" + rest),), hosts=(_host(host),) if host else ())
        for opt in opts:
            key, _, value = opt.partition("=")
            if key != "strip":
                raise ValueError(f"option {key!r} is not supported (only strip=)")
            spec = replace(spec, strip_path=_strip(value, spec.paths))
    except ValueError as exc:
        return replace(spec, error=f"{tag!r}: {exc}")
    return spec
