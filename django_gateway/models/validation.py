"""Field rules shared by the models, the admin forms and (later) the config file loader.

Each function takes user input and returns the canonical value or raises ``ValidationError`` with a
message a person can act on; the admin shows it on the form instead of failing with a 500.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ValidationError

from ..hosts import MAX_NAME_LENGTH, ascii_host_name, split_host
from ..paths import canonical_prefix
from ..route_regex import compile_route_regex

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def apply_rules(
    instance: object, rules: Iterable[tuple[str, Callable[[Any], Any]]]
) -> dict[str, list[str]]:
    """Run each ``(field, rule)`` on ``instance``, storing canonical values; returns the errors
    by field, so a form shows every problem at once."""
    errors: dict[str, list[str]] = {}
    for field, rule in rules:
        try:
            setattr(instance, field, rule(getattr(instance, field)))
        except ValidationError as exc:
            errors[field] = exc.messages
    return errors


def _as_list(value: object, field: str) -> list[Any]:
    if value in (None, ""):
        return []
    if not isinstance(value, list | tuple):
        raise ValidationError({field: "Expected a list."})
    return list(value)


def _check_header_text(text: str, what: str) -> None:
    if any(ch in text for ch in "\r\n\x00"):
        raise ValidationError(f"{what} must not contain CR, LF or NUL characters.")


def header_name(name: str) -> str:
    _check_header_text(name, "Header names")
    if not _TOKEN.match(name):
        raise ValidationError(f"{name!r} is not a valid HTTP header name.")
    return name


def header_value(value: str) -> str:
    _check_header_text(value, "Header values")
    return value


#: Longest configured path prefix; regexes have their own bound (``route_regex.MAX_LENGTH``).
MAX_PATH_LENGTH = 1024


def route_paths(value: object) -> list[str]:
    """Prefixes start with ``/`` and are stored canonical; ``~`` marks a regex RE2 can run."""
    paths = []
    for raw in _as_list(value, "paths"):
        if not isinstance(raw, str) or not raw:
            raise ValidationError("Each path must be a non-empty string.")
        _check_header_text(raw, "Paths")
        if raw.startswith("~"):
            try:
                compile_route_regex(raw[1:])
            except ValueError as exc:
                raise ValidationError(f"Regex path {_shown(raw)} {exc}.") from exc
            paths.append(raw)
            continue
        if len(raw) > MAX_PATH_LENGTH:
            raise ValidationError(
                f"Path {_shown(raw)} is longer than {MAX_PATH_LENGTH} characters."
            )
        if not raw.startswith("/"):
            raise ValidationError(f"Path {_shown(raw)} must start with '/' (or '~' for a regex).")
        if any(ch in raw for ch in "?#%\\"):
            raise ValidationError(
                f"Path {_shown(raw)} must be a plain decoded path: no '?', '#', '%' or backslash."
            )
        if "," in raw or any(ch.isspace() for ch in raw):
            raise ValidationError(
                f"Path {_shown(raw)} holds a comma or a space: enter one path per line."
            )
        paths.append(canonical_prefix(raw))
    return list(dict.fromkeys(paths))


def host_pattern(raw: str) -> str:
    """``api.example.com``, ``*.example.com`` (any deeper name) or either with ``:port``, stored as
    :func:`hosts.canonical_host` compares them: lower case, no trailing dot, IDNA A-labels."""
    text = raw.strip()
    if len(text) > MAX_NAME_LENGTH + 6:
        raise ValidationError(f"Host {_shown(raw)} is longer than {MAX_NAME_LENGTH} characters.")
    name, port = split_host(text)
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ValidationError(f"Host {_shown(raw)} has an invalid port.")
    try:
        name = ascii_host_name(name)
    except ValueError as exc:
        raise ValidationError(f"Host {exc}") from exc
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"Host {_shown(raw)} is longer than {MAX_NAME_LENGTH} characters.")
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            raise ValidationError(f"Wildcard host {raw!r} needs at least two labels after '*.'.")
    if not labels or not all(_LABEL.match(label) for label in labels):
        raise ValidationError(
            f"Host {_shown(raw)} is not a host name; use names like api.example.com or "
            "*.example.com, one per line."
        )
    return f"{name}:{port}" if port else name


def route_hosts(value: object) -> list[str]:
    return list(dict.fromkeys(host_pattern(str(h)) for h in _as_list(value, "hosts")))


def _shown(raw: str) -> str:
    """A configured value quoted for an error message, shortened: it may be thousands long."""
    return repr(raw if len(raw) <= 80 else raw[:60] + "…")


def route_methods(value: object) -> list[str]:
    methods = []
    for raw in _as_list(value, "methods"):
        method = str(raw).strip().upper()
        if method not in HTTP_METHODS:
            raise ValidationError(
                f"{raw!r} is not an HTTP method ({', '.join(HTTP_METHODS)}); one per line."
            )
        methods.append(method)
    return list(dict.fromkeys(methods))


def route_headers(value: object) -> dict[str, list[str]]:
    """``{"X-Version": ["2", "3"]}``: the request must carry one of the values for every name."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValidationError('Headers must be an object like {"X-Version": ["2"]}.')
    headers: dict[str, list[str]] = {}
    for name, values in value.items():
        values = [values] if isinstance(values, str) else values
        if not isinstance(values, Iterable) or not values:
            raise ValidationError(f"Header {name!r} needs a list of accepted values.")
        headers[header_name(str(name)).lower()] = [header_value(str(v)) for v in values]
    return headers


_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}$")


def group_names(value: object) -> list[str]:
    """ACL group names: sent upstream in ``X-Consumer-Groups``, so plain tokens only."""
    groups = []
    for raw in _as_list(value, "groups"):
        name = str(raw).strip()
        if not _GROUP.match(name):
            raise ValidationError(
                f"{raw!r} is not a group name (letters, digits and _ . : @ -, up to 100)."
            )
        groups.append(name)
    return list(dict.fromkeys(groups))


def cidr_list(value: object) -> list[str]:
    """IP networks for route allow/deny lists, stored canonical (``10.0.0.0/8``)."""
    import ipaddress

    networks = []
    for raw in _as_list(value, "ips"):
        try:
            networks.append(str(ipaddress.ip_network(str(raw).strip(), strict=False)))
        except ValueError as exc:
            raise ValidationError(f"{raw!r} is not an IP address or network.") from exc
    return list(dict.fromkeys(networks))


def consul_tags(value: object) -> list[str]:
    """Consul tags: non-empty strings without control characters, duplicates dropped."""
    tags: list[str] = []
    for tag in _as_list(value, "consul_tags"):
        if not isinstance(tag, str) or not tag.strip():
            raise ValidationError("Tags must be non-empty strings.")
        _check_header_text(tag, "Tags")
        if tag.strip() not in tags:
            tags.append(tag.strip())
    return tags
