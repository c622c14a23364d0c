"""One datacenter's catalog: its tables, its raft index and the reads served from them.

Not thread-safe on its own: :class:`~django_gateway.testing.consul.ConsulCatalog` holds its lock
around every call. Each write bumps the indexes Consul's state store bumps (the ``nodes``,
``services`` and ``checks`` tables, and the per-service index, which node-level changes bump for
every service on the node); a write that changes nothing bumps nothing, as the state store skips
idempotent updates. The index reported for a service follows ``maxIndexForService``: the
service's own index while it has instances, else the last "extinction" (a name losing its final
instance), else the table maximum.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any, TypeAlias, TypeVar

from .model import (
    SERF_HEALTH,
    SERVICE_MAINTENANCE_PREFIX,
    Check,
    Instance,
    Node,
    filter_non_passing,
)

__all__ = ["Datacenter", "Read"]

T = TypeVar("T")
#: What a read returns: the index, the JSON-ready result, and whether ACLs hid anything.
Read: TypeAlias = tuple[int, T, bool]
SERF_OUTPUT = {"passing": "Agent alive and reachable", "critical": "Agent not live or unreachable"}


class Datacenter:
    """Nodes, instances and checks of one datacenter, with Consul's index bookkeeping."""

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version
        self.index = 9  # a fresh server's raft log starts with internal writes
        self.nodes: dict[str, Node] = {}
        self.instances: dict[str, Instance] = {}
        self.tables = {"nodes": 0, "services": 0, "checks": 0}
        self.service_index: dict[str, int] = {}  # lower-cased service name -> index
        self.extinction = 0

    # -- lookups ------------------------------------------------------------------------------

    def instance(self, service_id: str) -> Instance:
        if service_id not in self.instances:
            raise KeyError(f"no service instance {service_id!r} in {self.name}")
        return self.instances[service_id]

    def node(self, name: str) -> Node:
        if name not in self.nodes:
            raise KeyError(f"no node {name!r} in {self.name}")
        return self.nodes[name]

    def named(self, name: str) -> list[Instance]:
        """Instances of service ``name`` (case-insensitive), in the state store's node/ID order."""
        found = [i for i in self.instances.values() if i.service.lower() == name.lower()]
        return sorted(found, key=lambda i: (i.node.lower(), i.id.lower()))

    def services_on(self, node: str) -> list[str]:
        return [i.service for i in self.instances.values() if i.node == node]

    def index_for_service(self, name: str, checks: bool) -> int:
        if self.named(name):
            return self.service_index.get(name.lower(), 1)
        if self.extinction:
            return self.extinction
        return max(self.tables["nodes"], self.tables["services"], self.tables["checks"] * checks)

    # -- writes -------------------------------------------------------------------------------

    def bump(self, *tables: str, services: Iterable[str] = ()) -> int:
        self.index += 1
        for table in tables:
            self.tables[table] = self.index
        for name in services:
            self.service_index[name.lower()] = self.index
        return self.index

    def ensure_node(self, name: str, address: str | None) -> Node:
        """The node ``name``, created with a passing ``serfHealth`` or moved to ``address``."""
        if name in self.nodes:
            node = self.nodes[name]
            if address is not None and address != node.address:
                node.address = address
                node.modify_index = self.bump("nodes", services=self.services_on(name))
            return node
        meta = {"consul-network-segment": "", "consul-version": self.version}
        node = self.nodes[name] = Node(name, address or "127.0.0.1", self.name, meta)
        node.create_index = node.modify_index = self.bump("nodes")
        serf = Check(
            name, SERF_HEALTH, "Serf Health Status", "passing", output=SERF_OUTPUT["passing"]
        )
        serf.create_index = serf.modify_index = self.bump("checks")
        node.checks[SERF_HEALTH] = serf
        return node

    def put(
        self,
        instance: Instance,
        checks: list[Check],
        *,
        replace_checks: bool = False,
        keep_status: bool = True,
    ) -> None:
        """Register ``instance`` (replacing one with its ID) and its ``checks``; checks it had
        keep their status if ``keep_status``, and are dropped if absent and ``replace_checks``."""
        old = self.instances.get(instance.id)
        if old is not None and (old.service, old.node) != (instance.service, instance.node):
            self.remove(old)
            old = None
        if old is None or old != instance:
            index = self.bump("services", services=[instance.service])
            instance.create_index = old.create_index if old else index
            instance.modify_index = index
            instance.checks = old.checks if old else {}
            self.instances[instance.id] = instance
        target = self.instances[instance.id]
        wanted = {check.check_id for check in checks}
        for stale in [c for c in target.checks if replace_checks and c not in wanted]:
            if not stale.startswith(SERVICE_MAINTENANCE_PREFIX):
                self.drop_check(target.checks, stale)
        for check in checks:
            existing = target.checks.get(check.check_id)
            status = existing.status if existing and keep_status else check.status
            self.put_check(target.checks, check, status, check.output)

    def put_check(self, owner: dict[str, Check], check: Check, status: str, output: str) -> None:
        """Store ``check`` with ``status``/``output`` in ``owner`` (a node's or an instance's)."""
        existing = owner.get(check.check_id)
        updated = replace(check, status=status, output=output)
        if existing is not None:
            updated.create_index = existing.create_index
            updated.modify_index = existing.modify_index
            if existing == updated:
                return  # idempotent: no raft write, no index bump
        updated.modify_index = self.bump("checks", services=self._affected(check))
        updated.create_index = updated.create_index or updated.modify_index
        owner[check.check_id] = updated

    def drop_check(self, owner: dict[str, Check], check_id: str) -> None:
        check = owner.pop(check_id)
        self.bump("checks", services=self._affected(check))

    def remove(self, instance: Instance) -> None:
        del self.instances[instance.id]
        index = self.bump("services", "checks", services=[instance.service])
        if not self.named(instance.service):
            self.service_index.pop(instance.service.lower(), None)
            self.extinction = index

    def lower_index(self, index: int) -> None:
        """Clamp every index to ``index``, as restoring an older snapshot does."""
        self.index = max(1, index)
        self.tables = {key: min(value, self.index) for key, value in self.tables.items()}
        self.service_index = {key: min(v, self.index) for key, v in self.service_index.items()}
        self.extinction = min(self.extinction, self.index)
        for record in self._records():
            record.create_index = min(record.create_index, self.index)
            record.modify_index = min(record.modify_index, self.index)

    # -- reads --------------------------------------------------------------------------------

    def health_service(
        self,
        name: str,
        *,
        tags: list[str],
        node_meta: Mapping[str, str],
        passing: bool,
        visible: bool,
        null_empty_meta: bool,
    ) -> Read[list[dict[str, Any]]]:
        """``/v1/health/service/<name>`` entries: node checks first, then the service's."""
        found = self._matching(name, tags, node_meta)
        entries = []
        for instance in found if visible else []:
            node = self.nodes[instance.node]
            checks = sorted(node.checks.values(), key=lambda c: c.check_id.lower())
            checks += sorted(instance.checks.values(), key=lambda c: c.check_id.lower())
            entries.append({
                "Node": node.render(),
                "Service": instance.render(null_empty_meta=null_empty_meta),
                "Checks": [check.render(instance.tags) for check in checks],
            })  # fmt: skip
        if passing:
            entries = filter_non_passing(entries)
        return self.index_for_service(name, checks=True), entries, bool(found) and not visible

    def catalog_service(
        self, name: str, *, tags: list[str], node_meta: Mapping[str, str], visible: bool
    ) -> Read[list[dict[str, Any]]]:
        found = self._matching(name, tags, node_meta)
        entries = [i.render_catalog(self.nodes[i.node]) for i in found] if visible else []
        return self.index_for_service(name, checks=False), entries, bool(found) and not visible

    def catalog_services(
        self, *, node_meta: Mapping[str, str], visible: bool
    ) -> Read[dict[str, list[str]]]:
        """Tags per service name, each list in random order as Consul builds it from a Go map."""
        tags: dict[str, set[str]] = {}
        for instance in self.instances.values():
            if _meta_matches(self.nodes[instance.node].meta, node_meta):
                tags.setdefault(instance.service, set()).update(instance.tags)
        found = {name: random.sample(sorted(t), len(t)) for name, t in sorted(tags.items())}
        return (
            max(1, self.tables["services"]),
            found if visible else {},
            bool(found) and not visible,
        )

    # -- internals ----------------------------------------------------------------------------

    def _affected(self, check: Check) -> list[str]:
        """A service check touches its service; a node check every service on the node."""
        return [check.service_name] if check.service_id else self.services_on(check.node)

    def _matching(self, name: str, tags: list[str], node_meta: Mapping[str, str]) -> list[Instance]:
        """Instances of ``name`` carrying every tag (case-insensitive) on matching nodes."""
        wanted = {tag.lower() for tag in tags}
        return [
            instance
            for instance in self.named(name)
            if wanted <= {tag.lower() for tag in instance.tags}
            and _meta_matches(self.nodes[instance.node].meta, node_meta)
        ]

    def _records(self) -> Iterator[Node | Instance | Check]:
        owners: list[Node | Instance] = [*self.nodes.values(), *self.instances.values()]
        for owner in owners:
            yield owner
            yield from owner.checks.values()


def _meta_matches(meta: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(meta.get(key) == value for key, value in wanted.items())
