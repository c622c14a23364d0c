"""The Consul double's HTTP server: routes, query options, ACLs and fault modes.

Each endpoint handles its input in the order Consul's handler does, so that a request that is
wrong in two ways gets the same refusal it would get from Consul: query options (``400 Invalid
wait time``/``Invalid index``), then endpoint parameters (``Invalid value for ?passing``), then the
datacenter (``500 No path to datacenter``), then the token (``403 ACL not found``), then the
permission (``403 Permission denied: ...``). Writes go to the agent's own node in the primary
datacenter, as they would on the agent a client talks to.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
from collections.abc import Callable
from typing import Any, Literal, Self

from ..rawservers import LoopbackServer
from ..upstreams import unused_port
from .catalog import ConsulCatalog
from .datacenter import Datacenter, Read
from .definitions import parse_go_duration, parse_service_definition
from .model import ConsulError
from .wire import ConsulRequest, Reply, encode_reply, parse_go_bool

__all__ = ["ANONYMOUS_ACCESSOR", "ConsulDouble"]

ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
_ANONYMOUS_HINT = (
    ". The anonymous token is used implicitly when a request does not specify a token."
)
_NOT_AN_API_PATH = (
    "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
)
_Handler = Callable[[ConsulRequest, str], Reply | None]
_Query = Callable[[Datacenter, bool], Read[Any]]


class ConsulDouble(LoopbackServer):
    """A Consul agent (in server mode) on loopback, speaking the HTTP API py-consul uses.

    ``acl_token`` turns ACLs on with ``default_policy = "deny"``: that token may do anything,
    requests without a token act as the anonymous token (reads come back empty, writes are
    refused) and any other token is ``403 ACL not found``. ``default_wait`` and ``max_wait``
    (seconds) are Consul's 5 and 10 minute blocking limits; ``jitter`` adds up to wait/16.
    ``leader`` is what ``/v1/status/leader`` reports; set it to ``""`` for a cluster without a
    leader (default-consistency reads then fail with ``500 No cluster leader``). The catalog
    options are those of :class:`~django_gateway.testing.consul.ConsulCatalog`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        port: int = 0,
        datacenter: str = "dc1",
        node: str = "consul-server-1",
        node_address: str = "127.0.0.1",
        acl_token: str | None = None,
        leader: str | None = None,
        default_wait: float = 300.0,
        max_wait: float = 600.0,
        jitter: bool = True,
        version: str = "1.21.3",
        consul_service: bool = True,
        null_empty_meta: bool = True,
    ) -> None:
        super().__init__(host, port=port)
        #: The cluster state; change it directly (``register``, ``set_status``, ...) from tests.
        self.catalog = ConsulCatalog(
            datacenter,
            node=node,
            node_address=node_address,
            version=version,
            consul_service=consul_service,
            null_empty_meta=null_empty_meta,
        )
        self.acl_token = acl_token
        self.leader = f"{node_address}:8300" if leader is None else leader
        self.default_wait = default_wait
        self.max_wait = max_wait
        self.jitter = jitter
        self._fault: tuple[Literal["error", "blackhole"], int, str] | None = None
        self._halting = threading.Event()
        self._routes: list[tuple[str, bool, str, _Handler]] = [
            ("/v1/health/service/", True, "GET", self._health_service),
            ("/v1/catalog/service/", True, "GET", self._catalog_service),
            ("/v1/catalog/services", False, "GET", self._catalog_services),
            ("/v1/catalog/datacenters", False, "GET", self._datacenters),
            ("/v1/status/leader", False, "GET", self._status_leader),
            ("/v1/status/peers", False, "GET", self._status_peers),
            ("/v1/agent/self", False, "GET", self._agent_self),
            ("/v1/agent/service/register", False, "PUT", self._agent_register),
            ("/v1/agent/service/deregister/", True, "PUT", self._agent_deregister),
            ("/v1/agent/service/maintenance/", True, "PUT", self._agent_maintenance),
            ("/v1/agent/maintenance", False, "PUT", self._agent_node_maintenance),
            ("/v1/agent/check/pass/", True, "PUT", self._agent_check_ttl),
            ("/v1/agent/check/warn/", True, "PUT", self._agent_check_ttl),
            ("/v1/agent/check/fail/", True, "PUT", self._agent_check_ttl),
            ("/v1/agent/check/update/", True, "PUT", self._agent_check_update),
        ]

    # -- lifecycle and knobs ------------------------------------------------------------------

    def start(self) -> Self:
        """Start listening; after the first start, always on the same port (to model a restart)."""
        self._halting.clear()
        if not self.wanted_port:  # a fixed port from the start, so it is rebound with SO_REUSEADDR
            self.wanted_port = unused_port(self.host)
        return super().start()

    def stop(self) -> None:
        """Stop listening and drop every connection, blocked queries included (as a crash does);
        the catalog survives, so a later :meth:`start` comes back with the same data."""
        self._halting.set()
        self.catalog.wake()
        super().stop()

    @property
    def address(self) -> str:
        """``host:port``, the form ``CONSUL_HTTP_ADDR`` takes."""
        return self.url.removeprefix("http://")

    # A fresh list each time, so narrowing its item type is safe (mypy sees only list invariance).
    @property
    def requests(self) -> list[ConsulRequest]:  # type: ignore[override]
        """Every request received so far (method, ``route``, ``params``, headers, body)."""
        return [r for r in super().requests if isinstance(r, ConsulRequest)]

    def set_fault(
        self,
        mode: Literal["error", "blackhole"] | None,
        *,
        status: int = 500,
        body: str = "No cluster leader",
    ) -> None:
        """``"error"``: reads answer ``status`` with ``body``; ``"blackhole"``: every request is
        read and never answered (until the fault is cleared, which drops it); ``None``: heal."""
        with self.catalog.changed:
            self._fault = None if mode is None else (mode, status, body)
            self.catalog.changed.notify_all()

    # -- serving ------------------------------------------------------------------------------

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        reader = self._reader(sock, connection_id)
        while (raw := reader.read_request()) is not None:
            request = ConsulRequest.from_recorded(raw)
            self._record(request)
            reply = self._answer(request)
            if reply is None:  # black hole, or stop() while the query was blocked
                with self.catalog.changed:
                    self.catalog.changed.wait_for(self._may_release)
                return
            accept = request.header("Accept-Encoding") or ""
            policy = "allow" if self.acl_token is None else "deny"
            sock.sendall(encode_reply(reply, accept_encoding=accept, acl_policy=policy))
            if not reader.keep_alive:
                return

    def _may_release(self) -> bool:
        return self._halting.is_set() or self._fault is None or self._fault[0] != "blackhole"

    def _answer(self, request: ConsulRequest) -> Reply | None:
        if self._fault is not None and self._fault[0] == "blackhole":
            return None
        for prefix, takes_tail, method, handler in self._routes:
            tail = request.route.removeprefix(prefix)
            if request.route == prefix or (takes_tail and request.route.startswith(prefix)):
                if request.method != method:
                    return Reply.error(
                        405, f"method {request.method} not allowed", {"Allow": method}
                    )
                try:
                    return handler(request, tail)
                except ConsulError as exc:
                    return Reply.error(exc.status, exc.body)
        if "/v1/" in request.route:
            return Reply.error(404, "Invalid URL path: not a recognized HTTP API endpoint\n")
        return Reply.error(404, _NOT_AN_API_PATH)

    # -- reads --------------------------------------------------------------------------------

    def _health_service(self, request: ConsulRequest, name: str) -> Reply | None:
        name = _service_name(name)
        options = self._query_options(request)
        passing = request.param("passing")
        try:
            only_passing = passing is not None and (passing == "" or parse_go_bool(passing))
        except ValueError:
            raise ConsulError(400, "Invalid value for ?passing") from None
        tags, meta = request.params.get("tag", []), _node_meta(request)
        null_meta = self.catalog.null_empty_meta

        def query(dc: Datacenter, visible: bool) -> Read[Any]:
            return dc.health_service(
                name,
                tags=tags,
                node_meta=meta,
                passing=only_passing,
                visible=visible,
                null_empty_meta=null_meta,
            )

        return self._read(request, options, query)

    def _catalog_service(self, request: ConsulRequest, name: str) -> Reply | None:
        name = _service_name(name)
        options = self._query_options(request)
        tags, meta = request.params.get("tag", []), _node_meta(request)

        def query(dc: Datacenter, visible: bool) -> Read[Any]:
            return dc.catalog_service(name, tags=tags, node_meta=meta, visible=visible)

        return self._read(request, options, query)

    def _catalog_services(self, request: ConsulRequest, _: str) -> Reply | None:
        options = self._query_options(request)
        meta = _node_meta(request)

        def query(dc: Datacenter, visible: bool) -> Read[Any]:
            return dc.catalog_services(node_meta=meta, visible=visible)

        return self._read(request, options, query)

    def _query_options(self, request: ConsulRequest) -> tuple[int, float, str]:
        """``parseConsistency`` and ``parseWait``: (min index, timeout in s, consistency)."""
        if "filter" in request.params:
            raise ConsulError(400, "The Consul test double does not evaluate ?filter expressions")
        stale, consistent = "stale" in request.params, "consistent" in request.params
        if stale and consistent:
            raise ConsulError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
        wait, index = request.param("wait") or "", request.param("index") or ""
        try:
            seconds = parse_go_duration(wait) / 1e9 if wait else 0.0
        except ValueError:
            raise ConsulError(400, "Invalid wait time") from None
        if index and (not re.fullmatch(r"[0-9]+", index) or int(index) >= 2**64):
            raise ConsulError(400, "Invalid index")
        timeout = min(seconds if seconds > 0 else self.default_wait, self.max_wait)
        if self.jitter:
            timeout += random.uniform(0, timeout / 16)  # RandomStagger(wait / JitterFraction)
        mode = "stale" if stale else "consistent" if consistent else "leader"
        return int(index or 0), timeout, mode

    def _read(
        self, request: ConsulRequest, options: tuple[int, float, str], query: _Query
    ) -> Reply | None:
        min_index, timeout, consistency = options
        dc = request.param("dc") or self.catalog.datacenter
        if dc not in self.catalog.datacenters:
            raise ConsulError(500, "No path to datacenter")
        if self._fault is not None:
            raise ConsulError(self._fault[1], self._fault[2])
        if not self.leader and consistency != "stale":
            raise ConsulError(500, "No cluster leader")
        visible = self._principal(request) != "anonymous"
        result = self.catalog.block(
            lambda: _index_first(self.catalog.read(dc, lambda state: query(state, visible))),
            min_index,
            timeout,
            self._halting.is_set,
        )
        if result is None:
            return None
        index, (data, filtered) = result
        headers = {
            "X-Consul-Effective-Consistency": consistency,
            "X-Consul-Index": str(max(1, index)),
            "X-Consul-Knownleader": "true" if self.leader else "false",
            "X-Consul-Lastcontact": "0",
            "X-Consul-Query-Backend": "blocking-query",
        }
        if filtered:
            headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
        return Reply.json(data, headers, pretty="pretty" in request.params)

    def _datacenters(self, request: ConsulRequest, _: str) -> Reply:
        return Reply.json(self.catalog.datacenters, {}, pretty="pretty" in request.params)

    def _status_leader(self, request: ConsulRequest, _: str) -> Reply:
        return Reply.json(self.leader, {})  # a JSON string, and no X-Consul-Index

    def _status_peers(self, request: ConsulRequest, _: str) -> Reply:
        return Reply.json([self.leader] if self.leader else [], {})

    def _agent_self(self, request: ConsulRequest, _: str) -> Reply:
        catalog = self.catalog
        self._require(self._principal(request), "agent", "read", catalog.node)
        node_id = catalog.read(None, lambda dc: dc.node(catalog.node).id)
        config = {
            "Datacenter": catalog.datacenter,
            "PrimaryDatacenter": catalog.datacenter,
            "NodeName": catalog.node,
            "NodeID": node_id,
            "Revision": "",
            "Server": True,
            "Version": catalog.version,
        }
        member = {
            "Name": catalog.node,
            "Addr": catalog.node_address,
            "Port": 8301,
            "Tags": {"dc": catalog.datacenter, "id": node_id, "port": "8300", "role": "consul"},
            "Status": 1,
        }
        return Reply.json({"Config": config, "Member": member, "Meta": {}}, {})

    # -- agent writes -------------------------------------------------------------------------

    def _agent_register(self, request: ConsulRequest, _: str) -> Reply:
        payload = _json_body(request)
        try:
            instance, checks = parse_service_definition(payload, self.catalog.node)
        except ConsulError as exc:
            if exc.body not in ("Missing service name", "Invalid service address"):
                self._principal(request)  # Consul resolves the token before the other checks
            raise
        self._require(self._principal(request), "service", "write", instance.service)
        replace = request.param("replace-existing-checks") in ("", "true")
        self.catalog.agent_register(instance, checks, replace)
        return Reply(200)

    def _agent_deregister(self, request: ConsulRequest, service_id: str) -> Reply:
        principal = self._principal(request)
        self._require(principal, "service", "write", self.catalog.agent_service(service_id))
        self.catalog.deregister(service_id)
        return Reply(200)

    def _agent_maintenance(self, request: ConsulRequest, service_id: str) -> Reply:
        if not service_id:
            raise ConsulError(400, "Missing service ID")
        enable = _enable_param(request)
        principal = self._principal(request)
        self._require(principal, "service", "write", self.catalog.agent_service(service_id))
        self.catalog.set_maintenance(service_id, enable, request.param("reason") or "")
        return Reply(200)

    def _agent_node_maintenance(self, request: ConsulRequest, _: str) -> Reply:
        enable = _enable_param(request)
        self._require(self._principal(request), "node", "write", self.catalog.node)
        self.catalog.set_node_maintenance(None, enable, request.param("reason") or "")
        return Reply(200)

    def _agent_check_ttl(self, request: ConsulRequest, check_id: str) -> Reply:
        verb = request.route.split("/")[4]  # /v1/agent/check/<verb>/<id>
        status = {"pass": "passing", "warn": "warning", "fail": "critical"}[verb]
        return self._update_check(request, check_id, status, request.param("note") or "")

    def _agent_check_update(self, request: ConsulRequest, check_id: str) -> Reply:
        payload = _json_body(request)
        if not isinstance(payload, dict):
            raise ConsulError(400, "Request decode failed: expected a JSON object")
        body = {str(key).lower(): value for key, value in payload.items()}
        status, output = body.get("status", ""), body.get("output") or ""
        if status not in ("passing", "warning", "critical"):
            raise ConsulError(400, f"Invalid check status: '{status}'")
        return self._update_check(request, check_id, status, str(output))

    def _update_check(
        self, request: ConsulRequest, check_id: str, status: str, output: str
    ) -> Reply:
        principal = self._principal(request)
        check = self.catalog.agent_check(check_id)
        resource, name = (
            ("service", check.service_name) if check.service_id else ("node", check.node)
        )
        self._require(principal, resource, "write", name)
        self.catalog.agent_update_check(check_id, status, output)
        return Reply(200)

    # -- ACLs ---------------------------------------------------------------------------------

    def _principal(self, request: ConsulRequest) -> str | None:
        """``None`` with ACLs off, else ``"management"`` or ``"anonymous"`` (no token, or the
        anonymous token's secret); any other token is ``403 ACL not found``."""
        if self.acl_token is None:
            return None
        token = request.token
        if token in ("", "anonymous"):
            return "anonymous"
        if token == self.acl_token:
            return "management"
        raise ConsulError(403, "ACL not found")

    def _require(self, principal: str | None, resource: str, level: str, name: str) -> None:
        if principal == "anonymous":
            raise ConsulError(
                403,
                f"Permission denied: anonymous token lacks permission '{resource}:{level}' on "
                f'"{name}"{_ANONYMOUS_HINT}',
            )


def _index_first(result: tuple[int, Any, bool]) -> tuple[int, tuple[Any, bool]]:
    index, data, filtered = result
    return index, (data, filtered)


def _service_name(name: str) -> str:
    if not name:
        raise ConsulError(400, "Missing service name")
    return name


def _node_meta(request: ConsulRequest) -> dict[str, str]:
    """``?node-meta=key:value`` filters (repeatable, all must match)."""
    pairs = (raw.partition(":") for raw in request.params.get("node-meta", []))
    return {key: value for key, _, value in pairs}


def _enable_param(request: ConsulRequest) -> bool:
    raw = request.param("enable")
    if raw is None:
        raise ConsulError(400, "Missing value for enable")
    try:
        return parse_go_bool(raw)
    except ValueError:
        raise ConsulError(400, f"Invalid value for enable: {json.dumps(raw)}") from None


def _json_body(request: ConsulRequest) -> Any:
    try:
        return request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConsulError(400, f"Request decode failed: {exc}") from None
