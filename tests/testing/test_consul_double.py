"""The Consul double, driven through py-consul: response shapes, filtering and blocking queries.

Each test states a behaviour of real Consul the double must reproduce (CONSUL_FACTS §0); none
needs the database. Blocking tests use waits of a second or less. ACLs, agent endpoints,
datacenters, faults and Go durations are in ``test_consul_double_agent.py``.
"""

from __future__ import annotations

import json
import time

import consul
import pytest
import requests
from consul.exceptions import BadRequest

from django_gateway.testing.consul import ConsulDouble
from django_gateway.testing.consul.model import filter_non_passing

from .conftest import in_thread, raw_get, upstream, users

NODE_ORDER = ["ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta"]
SERVICE_KEYS = ["ID", "Service", "Tags", "Address", "Meta", "Port", "Weights"]
CHECK_ORDER = ["Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName"]


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
