"""The thread-safe cluster state behind the Consul double: writes, agent operations, blocking.

Each datacenter (:class:`~django_gateway.testing.consul.datacenter.Datacenter`) has its own raft
index, as in a real federation. Every write happens under :attr:`ConsulCatalog.changed` and
wakes blocked queries, which re-run and return once their index moves past the client's, as in
Consul's ``blockingquery.Query``. :meth:`ConsulCatalog.reset_index` lowers every index and
abandons blocked queries, which is what a snapshot restore does to a server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from .datacenter import SERF_OUTPUT, Datacenter
from .definitions import service_check
from .model import (
    NODE_MAINTENANCE,
    SERF_HEALTH,
    SERVICE_MAINTENANCE_PREFIX,
    STATUSES,
    Check,
    ConsulError,
    Instance,
    Node,
    default_tagged_addresses,
)

__all__ = ["ConsulCatalog"]

T = TypeVar("T")
_MAINTENANCE_REASON = (
    "Maintenance mode is enabled for this {}, but no reason was provided. "
    "This is a default message."
)


class ConsulCatalog:
    """Nodes, service instances and checks for one or more datacenters, safe from any thread.

    Every datacenter starts with the server node ``node`` (at ``node_address``), which the agent
    endpoints act on in ``datacenter``, and, with ``consul_service``, the ``consul`` service
    real servers list. ``null_empty_meta`` renders an empty ``Service.Meta`` of a health entry as
    ``null`` (as captured from Consul 1.21) instead of ``{}``. Methods taking ``datacenter``
    default to the primary one and raise :class:`KeyError` for unknown services and nodes.
    Service IDs are unique per datacenter here (Consul only needs them unique per node).
    """

    def __init__(
        self,
        datacenter: str = "dc1",
        *,
        node: str = "consul-server-1",
        node_address: str = "127.0.0.1",
        version: str = "1.21.3",
        consul_service: bool = True,
        null_empty_meta: bool = True,
    ) -> None:
        #: Held by every read and write; blocked queries wait on it.
        self.changed = threading.Condition()
        self.datacenter = datacenter
        self.node = node
        self.node_address = node_address
        self.version = version
        self.consul_service = consul_service
        self.null_empty_meta = null_empty_meta
        self._dcs: dict[str, Datacenter] = {}
        self._generation = 0  # bumped to abandon blocked queries
        self.add_datacenter(datacenter)

    # -- datacenters, indexes, reads ---------------------------------------------------------

    def add_datacenter(self, name: str) -> None:
        """Create datacenter ``name`` with its server node (a no-op if it exists)."""
        with self.changed:
            if name in self._dcs:
                return
            dc = self._dcs[name] = Datacenter(name, self.version)
            dc.ensure_node(self.node, self.node_address)
            if self.consul_service:
                meta = {"raft_version": "3", "serf_protocol_current": "2", "version": self.version}
                dc.put(Instance("consul", "consul", self.node, port=8300, meta=meta), [])

    @property
    def datacenters(self) -> list[str]:
        with self.changed:
            return sorted(self._dcs)

    def index(self, datacenter: str | None = None) -> int:
        """The datacenter's current raft index."""
        return self.read(datacenter, lambda dc: dc.index)

    def service_index(self, service: str, datacenter: str | None = None) -> int:
        """The ``X-Consul-Index`` that ``/v1/health/service/<service>`` answers with now."""
        return self.read(datacenter, lambda dc: dc.index_for_service(service, checks=True))

    def read(self, datacenter: str | None, query: Callable[[Datacenter], T]) -> T:
        """``query`` run on the datacenter under the lock."""
        with self.changed:
            return query(self._dc(datacenter))

    def reset_index(self, index: int, datacenter: str | None = None) -> None:
        """Lower every index to at most ``index``, as a snapshot restore does, and make blocked
        queries return at once with the lower index; later writes continue from ``index``."""
        with self.changed:
            self._dc(datacenter).lower_index(index)
            self._generation += 1
            self.changed.notify_all()

    def wake(self) -> None:
        """Make blocked queries re-check their ``cancelled`` callback (used on shutdown)."""
        with self.changed:
            self.changed.notify_all()

    def block(
        self,
        query: Callable[[], tuple[int, T]],
        min_index: int,
        timeout: float,
        cancelled: Callable[[], bool],
    ) -> tuple[int, T] | None:
        """Consul's blocking loop: run ``query`` until its index exceeds ``min_index`` (at once
        for 0), a restore abandons the wait, or ``timeout`` passes (then the current result is
        returned anyway). ``None`` if ``cancelled()`` turned true first."""
        deadline = time.monotonic() + timeout
        with self.changed:
            generation = self._generation
            while not cancelled():
                index, result = query()
                remaining = deadline - time.monotonic()
                if not min_index or index > min_index or remaining <= 0:
                    return index, result
                if generation != self._generation:
                    return index, result
                self.changed.wait(remaining)
        return None

    # -- writes from Python ------------------------------------------------------------------

    def register(
        self,
        service: str,
        service_id: str | None = None,
        *,
        address: str = "",
        port: int = 0,
        tags: Iterable[str] = (),
        meta: Mapping[str, str] | None = None,
        weights: Mapping[str, int] | None = None,
        tagged_addresses: Mapping[str, tuple[str, int]] | None = None,
        node: str | None = None,
        node_address: str | None = None,
        datacenter: str | None = None,
        status: str | None = "passing",
        output: str = "",
    ) -> str:
        """Register (or replace) an instance and return its ID (``service_id`` or ``service``).

        An empty ``address`` leaves clients to fall back to ``Node.Address``. A new ``node`` gets
        ``node_address`` (default ``127.0.0.1``) and a passing ``serfHealth`` check; an existing
        one moves there if ``node_address`` is given. ``status`` sets the instance's TTL check
        ``service:<id>``; ``None`` registers it with no check of its own. A new ``datacenter``
        is created on the fly.
        """
        if status is not None:
            _valid_status(status)
        instance = Instance(
            id=service_id or service,
            service=service,
            node=node or self.node,
            address=address,
            port=port,
            tags=list(tags),
            meta=dict(meta or {}),
            weights={"Passing": 1, "Warning": 1} | dict(weights or {}),
            tagged_addresses=default_tagged_addresses(address, port, tagged_addresses or {}),
        )
        checks = [] if status is None else [service_check(instance, status, output)]
        with self.changed:
            self.add_datacenter(datacenter or self.datacenter)
            dc = self._dc(datacenter)
            dc.ensure_node(instance.node, node_address)
            dc.put(instance, checks, keep_status=False)
            self.changed.notify_all()
        return instance.id

    def deregister(self, service_id: str, datacenter: str | None = None) -> None:
        with self.changed:
            dc = self._dc(datacenter)
            dc.remove(dc.instance(service_id))
            self.changed.notify_all()

    def set_status(
        self, service_id: str, status: str, output: str = "", datacenter: str | None = None
    ) -> None:
        """Set every check of the instance (maintenance aside), adding ``service:<id>`` if none."""
        _valid_status(status)
        with self.changed:
            dc = self._dc(datacenter)
            instance = dc.instance(service_id)
            own = [c for c in instance.checks.values() if c.type != "maintenance"]
            for check in own or [service_check(instance, status)]:
                dc.put_check(instance.checks, check, status, output)
            self.changed.notify_all()

    def set_maintenance(
        self, service_id: str, enable: bool = True, reason: str = "", datacenter: str | None = None
    ) -> None:
        """Add (or remove) the critical ``_service_maintenance:<id>`` check, as the agent does."""
        with self.changed:
            dc = self._dc(datacenter)
            instance = dc.instance(service_id)
            check_id = SERVICE_MAINTENANCE_PREFIX + instance.id
            if enable and check_id not in instance.checks:
                check = service_check(
                    instance,
                    "critical",
                    check_id=check_id,
                    name="Service Maintenance Mode",
                    notes=reason or _MAINTENANCE_REASON.format("service"),
                    kind="maintenance",
                    interval="",
                    timeout="",
                )
                dc.put_check(instance.checks, check, "critical", "")
            elif not enable and check_id in instance.checks:
                dc.drop_check(instance.checks, check_id)
            self.changed.notify_all()

    def set_node_maintenance(
        self,
        node: str | None = None,
        enable: bool = True,
        reason: str = "",
        datacenter: str | None = None,
    ) -> None:
        """Add (or remove) the critical ``_node_maintenance`` check on ``node``."""
        with self.changed:
            dc = self._dc(datacenter)
            target = dc.node(node or self.node)
            if enable and NODE_MAINTENANCE not in target.checks:
                notes = reason or _MAINTENANCE_REASON.format("node")
                check = Check(target.name, NODE_MAINTENANCE, "Node Maintenance Mode", notes=notes)
                check.type = "maintenance"
                dc.put_check(target.checks, check, "critical", "")
            elif not enable and NODE_MAINTENANCE in target.checks:
                dc.drop_check(target.checks, NODE_MAINTENANCE)
            self.changed.notify_all()

    def set_node_health(self, node: str, status: str, datacenter: str | None = None) -> None:
        """Set the node's ``serfHealth`` check (``critical``: agent not live or unreachable)."""
        _valid_status(status)
        with self.changed:
            dc = self._dc(datacenter)
            target = dc.node(node)
            output = SERF_OUTPUT.get(status, SERF_OUTPUT["passing"])
            dc.put_check(target.checks, target.checks[SERF_HEALTH], status, output)
            self.changed.notify_all()

    # -- the agent endpoints: the server's own node, primary datacenter ----------------------

    def agent_service(self, service_id: str) -> str:
        """The name of service ``service_id`` on the agent; 404 as ``vetServiceUpdate`` says."""
        with self.changed:
            instance = self._dc(None).instances.get(service_id)
            if instance is None or instance.node != self.node:
                raise ConsulError(
                    404,
                    f'Unknown service ID "{service_id}". Ensure that the service ID is passed, '
                    "not the service name.",
                )
            return instance.service

    def agent_register(self, instance: Instance, checks: list[Check], replace: bool) -> None:
        """Add or update a service on the agent; checks it already had keep their status."""
        with self.changed:
            self._dc(None).put(instance, checks, replace_checks=replace)
            self.changed.notify_all()

    def agent_check(self, check_id: str) -> Check:
        """The agent's check ``check_id``, or 404 as ``vetCheckUpdate`` says."""
        with self.changed:
            dc = self._dc(None)
            owners: list[Node | Instance] = [
                dc.nodes[self.node],
                *(i for i in dc.instances.values() if i.node == self.node),
            ]
            for owner in owners:
                if check_id in owner.checks:
                    return owner.checks[check_id]
        raise ConsulError(
            404,
            f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.',
        )

    def agent_update_check(self, check_id: str, status: str, output: str) -> None:
        """``updateTTLCheck``: only TTL checks can be set, anything else is Consul's 500."""
        with self.changed:
            check = self.agent_check(check_id)
            if check.type != "ttl":
                raise ConsulError(500, f'CheckID "{check_id}" does not have associated TTL')
            dc = self._dc(None)
            owner = dc.instances[check.service_id] if check.service_id else dc.nodes[self.node]
            dc.put_check(owner.checks, check, status, output)
            self.changed.notify_all()

    def _dc(self, name: str | None) -> Datacenter:
        name = name or self.datacenter
        if name not in self._dcs:
            raise KeyError(f"no datacenter {name!r} in the Consul double")
        return self._dcs[name]


def _valid_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
