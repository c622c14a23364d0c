"""Turning Consul's ``/v1/health/service/<name>`` entries into :class:`~..balancing.Instance`\\ s.

Pure functions, no I/O: the watcher (:mod:`.watcher`) feeds them what py-consul decoded. The
rules follow what Consul and every major consumer of it do (CONSUL_FACTS §1.9, §1.10):

* **Address**: ``Service.Address``, else ``Node.Address``; the port is ``Service.Port`` (absent
  when 0, which cannot be dialled, so such an entry is skipped). Addresses may be host names;
  IPv6 literals are kept bare (``::1``) because the proxy adds the brackets itself.
* **Health**: an entry's status is the worst of all its checks, node checks (``serfHealth``, node
  maintenance) included: critical (maintenance is a critical check) > warning > passing. Only
  passing entries are used unless the service includes warning ones; critical never is.
* **Weight**: ``Service.Weights.Passing`` for a passing entry, ``.Warning`` for a warning one
  (Consul's default is 1 for both; Consul itself only uses weights for DNS SRV, so this is our
  convention). Weight 0 means "no traffic" and the entry is skipped.
* **Policy**: an address :func:`~..netpolicy.forbidden_upstream_reason` refuses (link-local,
  cloud metadata) is dropped, exactly as a static target with that address would be refused.

The same ``host:port`` registered twice (two service IDs) becomes one instance with the summed
weight, so it gets the traffic of both registrations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..config import Instance
from ..netpolicy import forbidden_upstream_reason

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"


@dataclass(frozen=True, slots=True)
class Parsed:
    """What one Consul answer resolves to: instances sorted by address (Consul's order is not
    stable, and a stable tuple keeps the balancer's position), plus why entries were skipped."""

    instances: tuple[Instance, ...]
    dropped: tuple[str, ...] = ()  # "users-2 (169.254.1.1:80): <reason>", for the log


def entry_status(entry: dict[str, Any]) -> str:
    """The aggregated status of an entry: the worst of its checks (unknown values count as
    critical, as an unreadable check should never route traffic)."""
    worst = PASSING
    for check in entry.get("Checks") or ():
        status = (check or {}).get("Status")
        if status == PASSING:
            continue
        if status == WARNING:
            worst = WARNING
        else:
            return CRITICAL
    return worst


def entry_address(entry: dict[str, Any]) -> str:
    """``Service.Address`` or ``Node.Address``, without IPv6 brackets."""
    service = entry.get("Service") or {}
    node = entry.get("Node") or {}
    address = (service.get("Address") or node.get("Address") or "").strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    return address


def entry_weight(entry: dict[str, Any], status: str) -> int:
    weights = (entry.get("Service") or {}).get("Weights") or {}
    value = weights.get("Warning" if status == WARNING else "Passing", 1)
    if isinstance(value, bool) or not isinstance(value, int):
        return 1
    return max(value, 0)


def parse_entries(entries: Iterable[object], *, include_warning: bool) -> Parsed:
    """Routable instances from health entries (decoded JSON, so anything), see the module
    docstring."""
    weights: dict[tuple[str, int], int] = {}
    dropped: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        service = entry.get("Service") or {}
        name = str(service.get("ID") or service.get("Service") or "?")
        status = entry_status(entry)
        if status == CRITICAL or (status == WARNING and not include_warning):
            continue  # not a fault: Consul says it is unhealthy
        address, port = entry_address(entry), service.get("Port") or 0
        if not address or not isinstance(port, int) or not 0 < port < 65536:
            dropped.append(f"{name} ({address or '?'}:{port}): no usable address and port")
            continue
        reason = forbidden_upstream_reason(address)
        if reason:
            dropped.append(f"{name} ({address}:{port}): {reason}")
            continue
        weight = entry_weight(entry, status)
        if weight:
            weights[(address, port)] = weights.get((address, port), 0) + weight
    instances = tuple(
        Instance(host=host, port=port, weight=weight)
        for (host, port), weight in sorted(weights.items())
    )
    return Parsed(instances, tuple(sorted(dropped)))
