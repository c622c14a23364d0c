"""The Consul double, driven through py-consul: ACLs, agent endpoints, datacenters, faults, and
Go durations (CONSUL_FACTS §0). Shapes, filtering and blocking are in ``test_consul_double.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import consul
import pytest
import requests
from consul.exceptions import BadRequest

from django_gateway.testing.consul import ConsulDouble
from django_gateway.testing.consul.definitions import format_go_duration, parse_go_duration

from .conftest import raw_get, users

ANONYMOUS_DENIAL = (
    "Permission denied: anonymous token lacks permission 'service:write' on \"web\". The "
    "anonymous token is used implicitly when a request does not specify a token."
)


# -- ACLs -------------------------------------------------------------------------------------


@pytest.fixture
def secured() -> Iterator[ConsulDouble]:
    with ConsulDouble(acl_token="s3cr3t") as server:
        users(server)
        yield server


def test_acl_token_is_read_from_header_query_or_bearer(secured: ConsulDouble) -> None:
    client = consul.Consul(host=secured.host, port=secured.port, token="s3cr3t")
    assert len(client.health.service("users")[1]) == 2
    assert secured.requests[-1].header("X-Consul-Token") == "s3cr3t"
    assert len(json.loads(raw_get(secured, "/v1/health/service/users?token=s3cr3t")[2])) == 2
    bearer = raw_get(secured, "/v1/health/service/users", Authorization="bearer s3cr3t")
    assert len(json.loads(bearer[2])) == 2
    assert bearer[1]["X-Consul-Default-Acl-Policy"] == "deny"


def test_anonymous_reads_are_filtered_silently(secured: ConsulDouble) -> None:
    client = consul.Consul(host=secured.host, port=secured.port)
    assert client.health.service("users")[1] == []
    assert client.catalog.services()[1] == {}
    _, headers, _ = raw_get(secured, "/v1/health/service/users")
    assert headers["X-Consul-Results-Filtered-By-ACLs"] == "true"


def test_unknown_token_is_acl_not_found(secured: ConsulDouble) -> None:
    client = consul.Consul(host=secured.host, port=secured.port, token="wrong")
    with pytest.raises(consul.ACLPermissionDenied, match=r"^ACL not found$"):
        client.health.service("users")


def test_anonymous_writes_are_permission_denied(secured: ConsulDouble) -> None:
    client = consul.Consul(host=secured.host, port=secured.port)
    with pytest.raises(consul.ACLPermissionDenied) as denied:
        client.agent.service.register("web", port=80)
    assert str(denied.value) == ANONYMOUS_DENIAL
    allowed = consul.Consul(host=secured.host, port=secured.port, token="s3cr3t")
    assert allowed.agent.service.register("web", port=80) is True


# -- agent endpoints --------------------------------------------------------------------------


def test_agent_register_takes_py_consul_payloads(
    double: ConsulDouble, client: consul.Consul
) -> None:
    check = consul.Check.http("http://10.0.0.5/health", "10s", timeout="1s")
    assert client.agent.service.register("web", "web1", address="10.0.0.5", port=80, tags=["a"],
                                         meta={"k": "v"}, check=check,
                                         weights={"Passing": 5, "Warning": 1})  # fmt: skip
    sent = double.requests[-1]
    assert (sent.method, sent.route) == ("PUT", "/v1/agent/service/register")
    assert {"name", "id", "address", "port", "tags", "meta", "checks", "weights"} <= set(
        sent.json()
    )
    (entry,) = client.health.service("web")[1]
    assert entry["Node"]["Node"] == "consul-server-1"
    assert entry["Service"]["Weights"] == {"Passing": 5, "Warning": 1}
    own = entry["Checks"][1]
    assert (own["CheckID"], own["Type"], own["Interval"], own["Timeout"], own["Status"]) == (
        "service:web1",
        "http",
        "10s",
        "1s",
        "critical",  # a new check starts critical until it runs
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "400 Missing service name"),
        ({"name": "web", "address": "0.0.0.0"}, "400 Invalid service address"),
        ({"name": "web", "meta": {"a.b": "x"}}, "Key contains invalid characters"),
        ({"name": "web", "weights": {"Passing": 0, "Warning": 1}}, "Passing must be greater"),
    ],
)
def test_agent_register_refusals(
    client: consul.Consul, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        client.agent.service.register(**fields)


def test_deregister_unknown_id_is_404(double: ConsulDouble, client: consul.Consul) -> None:
    assert client.agent.service.deregister("nope") is False
    assert double.requests[-1].route == "/v1/agent/service/deregister/nope"
    client.agent.service.register("web", "web1", port=80)
    assert client.agent.service.deregister("web1") is True
    assert client.health.service("web")[1] == []


def test_service_maintenance_is_a_critical_check(client: consul.Consul) -> None:
    client.agent.service.register("web", "web1", port=80, check={"ttl": "10s", "status": "passing"})
    assert len(client.health.service("web", passing=True)[1]) == 1
    assert client.agent.service.maintenance("web1", True, reason="upgrading") is True
    assert client.health.service("web", passing=True)[1] == []
    maintenance = client.health.service("web")[1][0]["Checks"][1]
    assert {k: maintenance[k] for k in ("CheckID", "Name", "Status", "Notes", "Type")} == {
        "CheckID": "_service_maintenance:web1",
        "Name": "Service Maintenance Mode",
        "Status": "critical",
        "Notes": "upgrading",
        "Type": "maintenance",
    }
    client.agent.service.maintenance("web1", False)
    assert len(client.health.service("web", passing=True)[1]) == 1


def test_node_maintenance_takes_every_instance_on_the_node_out(
    double: ConsulDouble, client: consul.Consul
) -> None:
    users(double)
    double.catalog.set_status("users-2", "passing")
    double.catalog.set_node_maintenance("node-a", reason="kernel update")
    _, passing = client.health.service("users", passing=True)
    assert [entry["Service"]["ID"] for entry in passing] == ["users-2"]
    assert client.agent.maintenance(True) is True  # the agent's own node
    assert client.health.service("consul", passing=True)[1] == []


def test_ttl_check_updates(double: ConsulDouble, client: consul.Consul) -> None:
    client.agent.service.register("web", "web1", port=80, check=consul.Check.ttl("10s"))
    assert client.agent.check.ttl_warn("service:web1", "slow") is True
    check = client.health.service("web")[1][0]["Checks"][1]
    assert (check["Status"], check["Output"]) == ("warning", "slow")
    assert client.agent.check.ttl_pass("nope") is False  # 404 Unknown check ID
    client.agent.service.register("api", "api1", port=81, check=consul.Check.tcp("h", 81, "5s"))
    with pytest.raises(consul.ConsulException, match='500 CheckID "service:api1" does not have'):
        client.agent.check.ttl_pass("service:api1")


# -- datacenters and faults -------------------------------------------------------------------


def test_datacenters_are_separate_and_unknown_ones_fail(
    double: ConsulDouble, client: consul.Consul
) -> None:
    double.catalog.register("users", "remote-1", port=80, datacenter="dc2")
    assert client.health.service("users")[1] == []
    (entry,) = client.health.service("users", dc="dc2")[1]
    assert entry["Node"]["Datacenter"] == "dc2"
    with pytest.raises(consul.ConsulException, match="500 No path to datacenter"):
        client.health.service("users", dc="nowhere")


def test_stop_refuses_connections_and_start_comes_back_on_the_same_port(
    double: ConsulDouble, client: consul.Consul
) -> None:
    users(double)
    port = double.port
    index, _ = client.health.service("users")
    watcher: list[BaseException] = []

    def watch() -> None:
        try:
            client.health.service("users", index=index, wait="5s")
        except requests.exceptions.ConnectionError as exc:
            watcher.append(exc)

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.2)
    double.stop()
    thread.join(2)
    assert len(watcher) == 1  # the blocked query is dropped, as when the agent dies
    with pytest.raises(requests.exceptions.ConnectionError):
        client.health.service("users")
    double.start()
    assert double.port == port
    assert client.health.service("users")[0] == index  # the state survived the restart


def test_error_fault_fails_reads_until_healed(double: ConsulDouble, client: consul.Consul) -> None:
    double.set_fault("error")
    with pytest.raises(consul.ConsulException, match="500 No cluster leader"):
        client.health.service("users")
    assert client.agent.service.register("web", port=80) is True  # writes still work
    double.set_fault(None)
    assert len(client.health.service("web")[1]) == 1


def test_blackhole_accepts_and_never_answers(double: ConsulDouble) -> None:
    double.set_fault("blackhole")
    impatient = consul.Consul(host=double.host, port=double.port, connections_timeout=0.3)
    with pytest.raises(requests.exceptions.ReadTimeout):
        impatient.catalog.services()
    assert double.requests[-1].route == "/v1/catalog/services"


def test_a_cluster_without_a_leader(double: ConsulDouble, client: consul.Consul) -> None:
    double.leader = ""
    assert client.status.leader() == ""
    with pytest.raises(consul.ConsulException, match="500 No cluster leader"):
        client.health.service("users")
    assert client.catalog.services(consistency="stale")[1] == {"consul": []}
    headers = raw_get(double, "/v1/catalog/services?stale")[1]
    assert (headers["X-Consul-Knownleader"], headers["X-Consul-Effective-Consistency"]) == (
        "false",
        "stale",
    )


# -- Go durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [("0", 0), ("5s", 5 * 10**9), ("100ms", 10**8), ("1m30s", 90 * 10**9), ("1.5h", 5400 * 10**9)],
)
def test_go_durations_parse(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "5", ".s", "5 s", "1x", "s"])
def test_go_durations_reject_what_go_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (10**8, "100ms"),
        (10 * 10**9, "10s"),
        (90 * 10**9, "1m30s"),
        (3600 * 10**9, "1h0m0s"),
    ],
)
def test_go_durations_format(ns: int, text: str) -> None:
    assert format_go_duration(ns) == text
