"""Catalog records (nodes, service instances, checks) and the JSON shapes Consul renders them in.

Field order follows the Go structs (``Node``, ``NodeService``, ``HealthCheck``, ``ServiceNode``),
which is the order Go's encoder emits; map-valued fields (``Meta``, ``TaggedAddresses``) are
sorted by key, as Go sorts map keys. The shapes match Consul 1.17-1.21 captures: ``Service.Port``
and ``Service.TaggedAddresses`` are omitted when empty, ``Service.Meta`` may be ``null`` in
health entries while the catalog's ``ServiceMeta`` is always an object, and lists are never
``null``.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NODE_MAINTENANCE",
    "SERF_HEALTH",
    "SERVICE_MAINTENANCE_PREFIX",
    "STATUSES",
    "Check",
    "ConsulError",
    "Instance",
    "Node",
    "default_tagged_addresses",
    "filter_non_passing",
]

#: The only values a check's ``Status`` takes (``maintenance`` is derived, never stored).
STATUSES = ("passing", "warning", "critical")
NODE_MAINTENANCE = "_node_maintenance"
SERVICE_MAINTENANCE_PREFIX = "_service_maintenance:"
SERF_HEALTH = "serfHealth"
_PROXY = {"Mode": "", "MeshGateway": {}, "Expose": {}}


class ConsulError(Exception):
    """A refusal carrying the status and plain-text body real Consul answers with."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


@dataclass
class Check:
    """One health check; an empty ``service_id`` makes it a node check (``serfHealth``)."""

    node: str
    check_id: str
    name: str
    status: str = "critical"
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    type: str = ""
    interval: str = ""
    timeout: str = ""
    create_index: int = 0
    modify_index: int = 0

    def render(self, service_tags: list[str]) -> dict[str, Any]:
        return {
            "Node": self.node,
            "CheckID": self.check_id,
            "Name": self.name,
            "Status": self.status,
            "Notes": self.notes,
            "Output": self.output,
            "ServiceID": self.service_id,
            "ServiceName": self.service_name,
            "ServiceTags": list(service_tags) if self.service_id else [],
            "Type": self.type,
            "Interval": self.interval,
            "Timeout": self.timeout,
            "ExposedPort": 0,
            "Definition": {},
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


@dataclass
class Node:
    """A catalog node; every node the double knows runs an agent, so has ``serfHealth``."""

    name: str
    address: str
    datacenter: str
    meta: dict[str, str]
    create_index: int = 0
    modify_index: int = 0
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.name}.{self.datacenter}.consul"))

    def render(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Node": self.name,
            "Address": self.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": _node_tagged(self.address),
            "Meta": dict(sorted(self.meta.items())),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


@dataclass
class Instance:
    """A service instance (Consul's ``NodeService``) on one node, with its own checks."""

    id: str
    service: str
    node: str
    address: str = ""
    port: int = 0
    tags: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=lambda: {"Passing": 1, "Warning": 1})
    tagged_addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    enable_tag_override: bool = False
    create_index: int = field(default=0, compare=False)
    modify_index: int = field(default=0, compare=False)
    checks: dict[str, Check] = field(default_factory=dict, compare=False)

    def render(self, *, null_empty_meta: bool) -> dict[str, Any]:
        """The ``Service`` object of a ``/v1/health/service`` entry."""
        out: dict[str, Any] = {
            "ID": self.id,
            "Service": self.service,
            "Tags": list(self.tags),
            "Address": self.address,
        }
        if self.tagged_addresses:  # omitempty
            out["TaggedAddresses"] = _service_tagged(self.tagged_addresses)
        out["Meta"] = None if null_empty_meta and not self.meta else dict(sorted(self.meta.items()))
        if self.port:  # omitempty
            out["Port"] = self.port
        return out | {
            "Weights": dict(self.weights),
            "EnableTagOverride": self.enable_tag_override,
            "Proxy": dict(_PROXY),
            "Connect": {},
            "PeerName": "",
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }

    def render_catalog(self, node: Node) -> dict[str, Any]:
        """One ``/v1/catalog/service`` entry (``ServiceNode``): node and service fields flat."""
        out: dict[str, Any] = {
            "ID": node.id,
            "Node": node.name,
            "Address": node.address,
            "Datacenter": node.datacenter,
            "TaggedAddresses": _node_tagged(node.address),
            "NodeMeta": dict(sorted(node.meta.items())),
            "ServiceKind": "",
            "ServiceID": self.id,
            "ServiceName": self.service,
            "ServiceTags": list(self.tags),
            "ServiceAddress": self.address,
        }
        if self.tagged_addresses:  # omitempty
            out["ServiceTaggedAddresses"] = _service_tagged(self.tagged_addresses)
        return out | {
            "ServiceWeights": dict(self.weights),
            "ServiceMeta": dict(sorted(self.meta.items())),
            "ServicePort": self.port,
            "ServiceSocketPath": "",
            "ServiceEnableTagOverride": self.enable_tag_override,
            "ServiceProxy": dict(_PROXY),
            "ServiceConnect": {},
            "ServiceLocality": None,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


def default_tagged_addresses(
    address: str, port: int, given: Mapping[str, tuple[str, int]]
) -> dict[str, tuple[str, int]]:
    """What the agent stores: ``given`` plus ``lan_ipv4``/``wan_ipv4`` (or ``_ipv6``) when the
    service address is an IP literal (not for hostnames, which Consul accepts unvalidated)."""
    tagged = dict(given)
    family = {4: "ipv4", 6: "ipv6"}.get(_ip_version(address) or 0)
    if family:
        for key in (f"lan_{family}", f"wan_{family}"):
            tagged.setdefault(key, (address, port))
    return tagged


def filter_non_passing(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consul's ``filterNonPassing``: drop an entry if *any* check (node checks included) is not
    ``passing``, by swapping it to the end and cutting, so the survivors' order is not kept."""
    n, i = len(entries), 0
    while i < n:
        if any(check["Status"] != "passing" for check in entries[i]["Checks"]):
            entries[i], entries[n - 1] = entries[n - 1], entries[i]
            n -= 1
        else:
            i += 1
    return entries[:n]


def _ip_version(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None


def _node_tagged(address: str) -> dict[str, str]:
    family = {4: "ipv4", 6: "ipv6"}.get(_ip_version(address) or 0)
    keys = ["lan", "wan"] + ([f"lan_{family}", f"wan_{family}"] if family else [])
    return {key: address for key in sorted(keys)}


def _service_tagged(tagged: Mapping[str, tuple[str, int]]) -> dict[str, dict[str, Any]]:
    return {key: {"Address": addr, "Port": port} for key, (addr, port) in sorted(tagged.items())}
