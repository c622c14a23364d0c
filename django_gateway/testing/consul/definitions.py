"""Decoding what clients send: Go durations and agent service definitions.

``PUT /v1/agent/service/register`` bodies are decoded the way Consul's ``lib/decode`` does it:
keys in any case, with or without underscores (py-consul sends ``name``, ``id``, ``port``,
``tags``, ``meta``, ``checks``, ``enabletagoverride``, ``tagged_addresses``), and validated in
``AgentRegisterService``'s order with its 400 messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .model import STATUSES, Check, ConsulError, Instance, default_tagged_addresses

__all__ = ["format_go_duration", "parse_go_duration", "parse_service_definition"]

_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_UNITS |= {"m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]+)")
_META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")
#: Which key of a check definition decides its ``Type``.
_CHECK_TYPES = {
    "ttl": "ttl",
    "http": "http",
    "tcp": "tcp",
    "grpc": "grpc",
    "udp": "udp",
    "h2ping": "h2ping",
    "args": "script",
    "script": "script",
    "dockercontainerid": "docker",
    "aliasnode": "alias",
    "aliasservice": "alias",
    "osservice": "os_service",
}


def parse_go_duration(text: str) -> int:
    """Nanoseconds in a Go ``time.ParseDuration`` string (``"5s"``, ``"1m30s"``, ``"100ms"``);
    raises :class:`ValueError` where Go would (a missing unit, ``""``, ``"."``)."""
    sign, rest = (-1, text[1:]) if text[:1] == "-" else (1, text.removeprefix("+"))
    if rest == "0":
        return 0
    total, pos = 0, 0
    while pos < len(rest) or pos == 0:
        match = _DURATION_PART.match(rest, pos)
        if not match or not (match[1] or match[2]) or match[3] not in _UNITS:
            raise ValueError(f"time: invalid duration {text!r}")
        unit, fraction = _UNITS[match[3]], match[2] or ""
        total += int(match[1] or 0) * unit
        if fraction:
            total += int(fraction) * unit // 10 ** len(fraction)
        pos = match.end()
    return sign * total


def format_go_duration(ns: int) -> str:
    """Go's ``Duration.String()``: ``0s``, ``150ms``, ``10s``, ``1m30s``, ``1h0m0s``."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < 10**9:
        unit, size = ("ms", 10**6) if ns >= 10**6 else ("µs", 10**3) if ns >= 10**3 else ("ns", 1)
        return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    prefix = f"{hours}h{minutes}m" if hours else f"{minutes}m" if minutes else ""
    return f"{sign}{prefix}{_decimal(rest, 10**9)}s"


def parse_service_definition(payload: Any, node: str) -> tuple[Instance, list[Check]]:
    """The instance and checks an agent ``ServiceDefinition`` body registers on ``node``.

    Raises :class:`ConsulError` with Consul's 400s: ``Missing service name``, ``Invalid service
    address`` (an unspecified address such as ``0.0.0.0``), ``Invalid Weights: ...``, ``Invalid
    Service Meta: ...``, ``Status for checks must ...`` and ``Request decode failed: ...``.
    """
    spec = _fold(payload, "ServiceDefinition")
    name = _typed(spec.get("name"), str, "Name", "")
    if not name:
        raise ConsulError(400, "Missing service name")
    address = _typed(spec.get("address"), str, "Address", "")
    if address in ("0.0.0.0", "::", "[::]"):
        raise ConsulError(400, "Invalid service address")
    port = _typed(spec.get("port"), int, "Port", 0)
    weights = _weights(spec.get("weights"))
    meta = _typed(spec.get("meta"), Mapping, "Meta", {})
    _check_meta(meta)
    tagged = {}
    for key, value in _typed(spec.get("taggedaddresses"), Mapping, "TaggedAddresses", {}).items():
        entry = _fold(value, "ServiceAddress")
        tagged[key] = (
            _typed(entry.get("address"), str, "Address", ""),
            _typed(entry.get("port"), int, "Port", 0),
        )
    instance = Instance(
        id=_typed(spec.get("id"), str, "ID", "") or name,
        service=name,
        node=node,
        address=address,
        port=port,
        tags=list(_typed(spec.get("tags"), list, "Tags", [])),
        meta=dict(meta),
        weights=weights,
        tagged_addresses=default_tagged_addresses(address, port, tagged),
        enable_tag_override=bool(spec.get("enabletagoverride")),
    )
    raw_checks = list(_typed(spec.get("checks"), list, "Checks", []))
    if spec.get("check"):
        raw_checks.insert(0, spec["check"])
    suffixes = [f":{n}" for n in range(1, len(raw_checks) + 1)] if len(raw_checks) > 1 else [""]
    return instance, [
        _check(instance, raw, f"service:{instance.id}{suffix}")
        for raw, suffix in zip(raw_checks, suffixes, strict=False)
    ]


def service_check(
    instance: Instance,
    status: str,
    output: str = "",
    *,
    check_id: str = "",
    name: str = "",
    notes: str = "",
    kind: str = "ttl",
    interval: str = "0s",
    timeout: str = "0s",
) -> Check:
    """A check of ``instance`` named as the agent names it (``Service '<name>' check``)."""
    return Check(
        node=instance.node,
        check_id=check_id or f"service:{instance.id}",
        name=name or f"Service '{instance.service}' check",
        status=status,
        notes=notes,
        output=output,
        service_id=instance.id,
        service_name=instance.service,
        type=kind,
        interval=interval,
        timeout=timeout,
    )


def _check(instance: Instance, raw: Any, check_id: str) -> Check:
    spec = _fold(raw, "CheckType")
    status = _typed(spec.get("status"), str, "Status", "") or "critical"
    if status not in STATUSES:
        raise ConsulError(400, "Status for checks must 'passing', 'warning', 'critical'")
    durations = {
        key: format_go_duration(_duration(spec.get(key))) for key in ("interval", "timeout")
    }
    return service_check(
        instance,
        status,
        _typed(spec.get("output"), str, "Output", ""),
        check_id=_typed(spec.get("checkid") or spec.get("id"), str, "CheckID", "") or check_id,
        name=_typed(spec.get("name"), str, "Name", ""),
        notes=_typed(spec.get("notes"), str, "Notes", ""),
        kind=next((kind for key, kind in _CHECK_TYPES.items() if spec.get(key)), ""),
        **durations,
    )


def _weights(raw: Any) -> dict[str, int]:
    if raw is None:
        return {"Passing": 1, "Warning": 1}
    spec = _fold(raw, "Weights")
    weights = {
        "Passing": _typed(spec.get("passing"), int, "Passing", 0),
        "Warning": _typed(spec.get("warning"), int, "Warning", 0),
    }
    if weights["Passing"] < 1:
        raise ConsulError(400, "Invalid Weights: Passing must be greater than 0")
    if weights["Warning"] < 0:
        raise ConsulError(400, "Invalid Weights: Warning must be greater or equal than 0")
    return weights


def _check_meta(meta: Mapping[Any, Any]) -> None:
    """``structs.ValidateServiceMetadata`` (no ``consul-`` prefix from clients)."""
    if len(meta) > 64:
        raise ConsulError(
            400, "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs"
        )
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConsulError(400, "Request decode failed: Meta: expected strings")
        problem = (
            "Key cannot be blank"
            if not key
            else "Key contains invalid characters"
            if not _META_KEY.match(key)
            else "Key is too long (limit: 128 characters)"
            if len(key) > 128
            else "Key prefix 'consul-' is reserved for internal use"
            if key.startswith("consul-")
            else "Value is too long (limit: 512 characters)"
            if len(value) > 512
            else ""
        )
        if problem:
            raise ConsulError(
                400,
                f"Invalid Service Meta: Couldn't load metadata pair ('{key}', '{value}'): {problem}",
            )


def _fold(payload: Any, what: str) -> dict[str, Any]:
    """Keys folded the way Consul's decoder matches them: any case, snake_case or not."""
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise ConsulError(400, f"Request decode failed: {what}: expected a map")
    return {str(key).replace("_", "").lower(): value for key, value in payload.items()}


def _typed(value: Any, kind: type, what: str, default: Any) -> Any:
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConsulError(400, f"Request decode failed: {what}: unexpected type")
    return value


def _duration(value: Any) -> int:
    """A check duration: a Go duration string, or nanoseconds as a number."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return int(value or 0)
    try:
        return parse_go_duration(_typed(value, str, "Duration", ""))
    except ValueError as exc:
        raise ConsulError(400, f"Request decode failed: {exc}") from None


def _decimal(value: int, size: int) -> str:
    whole, rest = divmod(value, size)
    digits = str(rest).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)
