"""The Consul double, driven through py-consul (and raw HTTP where the wire itself matters).

Each test states a behaviour of real Consul the double must reproduce (CONSUL_FACTS §0); none
needs the database. Blocking tests use waits of a second or less.
"""

from __future__ import annotations

import http.client
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
from django_gateway.testing.consul.model import filter_non_passing

NODE_ORDER = ["ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta"]
SERVICE_KEYS = ["ID", "Service", "Tags", "Address", "Meta", "Port", "Weights"]
CHECK_ORDER = ["Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName"]
ANONYMOUS_DENIAL = (
    "Permission denied: anonymous token lacks permission 'service:write' on \"web\". The "
    "anonymous token is used implicitly when a request does not specify a token."
)


@pytest.fixture
def double() -> Iterator[ConsulDouble]:
    with ConsulDouble() as server:
        yield server


@pytest.fixture
def client(double: ConsulDouble) -> consul.Consul:
    return consul.Consul(host=double.host, port=double.port, connections_timeout=5)


def users(double: ConsulDouble) -> None:
    """CONSUL_FACTS §5 D: users-1 on node-a with no address, users-2 on node-b, critical."""
    tags = ["gateway.enable=true", "gateway.route=/api/users", "v2"]
    meta = {"version": "2.3.1", "protocol": "http"}
    weights = {"Passing": 10, "Warning": 1}
    double.catalog.register("users", "users-1", port=8080, tags=tags, meta=meta, weights=weights,
                            node="node-a", node_address="10.0.0.11")  # fmt: skip
    double.catalog.register("users", "users-2", address="10.0.1.7", port=8080, tags=tags,
                            meta=meta, weights=weights, node="node-b", node_address="10.0.0.12",
                            status="critical")  # fmt: skip


def upstream(entry: dict[str, Any]) -> str:
    """The resolution rule of CONSUL_FACTS §1.9: Service.Address or Node.Address, Service.Port."""
    return f"{entry['Service']['Address'] or entry['Node']['Address']}:{entry['Service']['Port']}"


def raw_get(double: ConsulDouble, target: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """A GET whose header names come back exactly as sent on the wire."""
    conn = http.client.HTTPConnection(double.host, double.port, timeout=5)
    try:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def in_thread(delay: float, action: Any) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- response shapes ------------------------------------------------------------------------


def test_health_entries_have_the_modern_shape_and_resolve_through_node_address(
    double: ConsulDouble, client: consul.Consul
) -> None:
    users(double)
    index, entries = client.health.service("users")
    assert isinstance(index, str) and int(index) >= 1
    first, second = entries
    assert list(first) == ["Node", "Service", "Checks"]
    assert list(first["Node"])[: len(NODE_ORDER)] == NODE_ORDER
    assert [key for key in first["Service"] if key in SERVICE_KEYS] == SERVICE_KEYS
    assert list(first["Checks"][0])[: len(CHECK_ORDER)] == CHECK_ORDER
    assert first["Service"]["Address"] == "" and "TaggedAddresses" not in first["Service"]
    assert first["Service"]["Meta"] == {"protocol": "http", "version": "2.3.1"}
    assert first["Service"]["Weights"] == {"Passing": 10, "Warning": 1}
    assert first["Node"]["TaggedAddresses"]["wan_ipv4"] == "10.0.0.11"
    assert [upstream(first), upstream(second)] == ["10.0.0.11:8080", "10.0.1.7:8080"]
    assert second["Service"]["TaggedAddresses"] == {
        "lan_ipv4": {"Address": "10.0.1.7", "Port": 8080},
        "wan_ipv4": {"Address": "10.0.1.7", "Port": 8080},
    }
    serf, own = first["Checks"]
    assert (serf["CheckID"], serf["Output"], serf["ServiceTags"]) == (
        "serfHealth",
        "Agent alive and reachable",
        [],
    )
    assert (own["CheckID"], own["ServiceTags"]) == ("service:users-1", first["Service"]["Tags"])
    assert second["Checks"][1]["Status"] == "critical"


def test_empty_fields_follow_go_omitempty_and_never_null_lists(
    double: ConsulDouble, client: consul.Consul
) -> None:
    double.catalog.register("bare", status=None)
    (entry,) = client.health.service("bare")[1]
    assert "Port" not in entry["Service"] and "TaggedAddresses" not in entry["Service"]
    assert entry["Service"]["Tags"] == [] and entry["Service"]["Meta"] is None
    assert entry["Service"]["Weights"] == {"Passing": 1, "Warning": 1}
    assert [check["CheckID"] for check in entry["Checks"]] == ["serfHealth"]
    (catalog_entry,) = client.catalog.service("bare")[1]
    assert catalog_entry["ServiceMeta"] == {} and catalog_entry["ServicePort"] == 0
    assert catalog_entry["ServiceAddress"] == "" and catalog_entry["Address"] == "127.0.0.1"
    with ConsulDouble(null_empty_meta=False) as other:
        other.catalog.register("bare")
        assert (
            consul.Consul(host=other.host, port=other.port).health.service("bare")[1][0]["Service"][
                "Meta"
            ]
            == {}
        )


def test_unknown_service_is_an_empty_list_with_a_nonzero_index(client: consul.Consul) -> None:
    index, entries = client.health.service("nope")
    assert entries == [] and int(index) >= 1
    assert client.catalog.service("nope")[1] == []


def test_reads_carry_consul_headers_in_go_casing(double: ConsulDouble) -> None:
    status, headers, body = raw_get(double, "/v1/health/service/nope")
    assert (status, body) == (200, b"[]")
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Consul-Knownleader"] == "true"
    assert headers["X-Consul-Lastcontact"] == "0"
    assert int(headers["X-Consul-Index"]) >= 1
    assert headers["X-Consul-Default-Acl-Policy"] == "allow"
    assert headers["Vary"] == "Accept-Encoding"


def test_status_leader_is_a_json_string_without_an_index(
    double: ConsulDouble, client: consul.Consul
) -> None:
    assert client.status.leader() == "127.0.0.1:8300"
    status, headers, body = raw_get(double, "/v1/status/leader")
    assert (status, body) == (200, b'"127.0.0.1:8300"')
    assert "X-Consul-Index" not in headers


def test_catalog_lists_services_with_their_tags(
    double: ConsulDouble, client: consul.Consul
) -> None:
    users(double)
    _, services = client.catalog.services()
    assert set(services) == {"consul", "users"}  # a server lists itself, as real ones do
    assert sorted(services["users"]) == ["gateway.enable=true", "gateway.route=/api/users", "v2"]
    _, entries = client.catalog.service("users", tag="V2")
    assert [(e["ServiceID"], e["Address"], e["ServiceAddress"]) for e in entries] == [
        ("users-1", "10.0.0.11", ""),
        ("users-2", "10.0.0.12", "10.0.1.7"),
    ]


def test_go_json_escaping_pretty_printing_and_gzip(double: ConsulDouble) -> None:
    double.catalog.register("odd", tags=["<a&b>"], meta={"k": "ü"})
    _, _, body = raw_get(double, "/v1/catalog/service/odd")
    assert b'"ServiceTags":["\\u003ca\\u0026b\\u003e"]' in body and "ü".encode() in body
    _, _, pretty = raw_get(double, "/v1/health/service/odd?pretty")
    assert pretty.startswith(b'[\n    {\n        "Node": {') and pretty.endswith(b"]\n")
    for n in range(8):
        double.catalog.register("odd", f"odd-{n}", port=8000 + n)
    _, headers, _ = raw_get(double, "/v1/health/service/odd", **{"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    response = requests.get(f"{double.url}/v1/health/service/odd", timeout=5)  # decodes gzip
    assert len(response.json()) == 9


# -- filtering --------------------------------------------------------------------------------


def test_passing_drops_warning_critical_and_failing_nodes(
    double: ConsulDouble, client: consul.Consul
) -> None:
    for status in ("passing", "warning", "critical"):
        double.catalog.register("api", f"api-{status}", port=80, status=status)
    double.catalog.register("api", "api-dead-node", port=80, node="dead", node_address="10.9.9.9")
    double.catalog.set_node_health("dead", "critical")
    _, everything = client.health.service("api")
    assert len(everything) == 4
    _, passing = client.health.service("api", passing=True)
    assert [entry["Service"]["ID"] for entry in passing] == ["api-passing"]
    assert double.requests[-1].params["passing"] == ["1"]


def test_passing_parses_go_bools(double: ConsulDouble) -> None:
    double.catalog.register("api", "a", status="passing")
    double.catalog.register("api", "b", status="warning")
    for query, expected in [("passing", 1), ("passing=true", 1), ("passing=0", 2)]:
        assert len(json.loads(raw_get(double, f"/v1/health/service/api?{query}")[2])) == expected
    assert raw_get(double, "/v1/health/service/api?passing=yes")[::2] == (
        400,
        b"Invalid value for ?passing",
    )


def test_filtering_swaps_failures_to_the_end_so_order_is_not_kept() -> None:
    entries = [
        {"Checks": [{"Status": s}], "id": i}
        for i, s in enumerate(["critical", "passing", "passing"])
    ]
    assert [entry["id"] for entry in filter_non_passing(entries)] == [2, 1]


def test_tags_must_all_match_case_insensitively(
    double: ConsulDouble, client: consul.Consul
) -> None:
    double.catalog.register("api", "both", tags=["Gateway.Enable=true", "v2"])
    double.catalog.register("api", "one", tags=["gateway.enable=true"])
    _, entries = client.health.service("api", tag=["gateway.enable=true", "V2"])
    assert [entry["Service"]["ID"] for entry in entries] == ["both"]
    assert double.requests[-1].params["tag"] == ["gateway.enable=true", "V2"]


# -- blocking queries -------------------------------------------------------------------------


def test_blocked_query_returns_promptly_after_a_register(
    double: ConsulDouble, client: consul.Consul
) -> None:
    index, _ = client.health.service("users")
    in_thread(0.2, lambda: users(double))
    started = time.monotonic()
    new_index, entries = client.health.service("users", index=index, wait="5s")
    assert time.monotonic() - started < 1.5
    assert int(new_index) > int(index) and len(entries) == 2
    assert double.requests[-1].params == {"index": [index], "wait": ["5s"]}


def test_blocked_query_times_out_after_wait_plus_jitter_with_the_same_index(
    double: ConsulDouble, client: consul.Consul
) -> None:
    users(double)
    index, _ = client.health.service("users")
    in_thread(0.1, lambda: double.catalog.register("orders", port=9000))  # another service
    started = time.monotonic()
    same, entries = client.health.service("users", index=index, wait="1s")
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.0 + 1 / 16 + 0.4
    assert same == index and len(entries) == 2


def test_a_check_change_moves_the_service_index(
    double: ConsulDouble, client: consul.Consul
) -> None:
    users(double)
    index, _ = client.health.service("users")
    in_thread(0.1, lambda: double.catalog.set_status("users-2", "passing"))
    new_index, entries = client.health.service("users", index=index, wait="5s", passing=True)
    assert int(new_index) > int(index) and len(entries) == 2
    double.catalog.set_status("users-2", "passing")  # idempotent: no raft write
    assert double.catalog.service_index("users") == int(new_index)


def test_index_zero_answers_at_once_and_bad_options_are_400(double: ConsulDouble) -> None:
    started = time.monotonic()
    assert raw_get(double, "/v1/health/service/x?index=0&wait=5s")[0] == 200
    assert time.monotonic() - started < 0.5
    assert raw_get(double, "/v1/health/service/x?index=-1")[::2] == (400, b"Invalid index")
    assert raw_get(double, "/v1/health/service/x?index=1&wait=5")[::2] == (
        400,
        b"Invalid wait time",
    )


def test_bad_wait_surfaces_as_py_consul_bad_request(client: consul.Consul) -> None:
    with pytest.raises(BadRequest, match="400 Invalid wait time"):
        client.health.service("x", index=5, wait="soon")


def test_wait_defaults_and_cap_are_configurable() -> None:
    with ConsulDouble(default_wait=0.2, max_wait=0.4, jitter=False) as double:
        index = double.catalog.index()
        for wait, expected in [("", 0.2), ("&wait=10m", 0.4)]:
            started = time.monotonic()
            raw_get(double, f"/v1/catalog/services?index={index}{wait}")
            assert expected <= time.monotonic() - started < expected + 0.25


def test_index_going_backwards_releases_watchers_and_needs_a_client_reset(
    double: ConsulDouble, client: consul.Consul
) -> None:
    users(double)
    index, _ = client.health.service("users")
    in_thread(0.2, lambda: double.catalog.reset_index(3))  # a snapshot restore
    started = time.monotonic()
    lowered, entries = client.health.service("users", index=index, wait="5s")
    assert time.monotonic() - started < 1.5
    assert int(lowered) <= 3 < int(index) and len(entries) == 2
    started = time.monotonic()  # a client that keeps the old index waits out every wait ...
    assert client.health.service("users", index=index, wait="300ms")[0] == lowered
    assert time.monotonic() - started >= 0.3
    double.catalog.set_status("users-2", "passing")  # ... and still misses changes
    assert int(client.health.service("users", index=index, wait="300ms")[0]) < int(index)
    assert int(client.health.service("users", index=lowered, wait="300ms")[0]) > int(lowered)


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
