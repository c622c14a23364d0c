"""Consul discovery through py-consul against the Consul double (real sockets, real blocking).

Every test asserts what a user of the gateway notices: which instances requests go to, how fast
a change in Consul reaches them, and what happens when Consul fails. No request may wait on
Consul after a service's cold start (each ``instances_for`` call is timed in ``timed``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from django_gateway.discovery import describe, instances_for
from django_gateway.exceptions import ServiceUnavailable
from django_gateway.runtime import runtime
from django_gateway.testing.consul import ConsulDouble

from .conftest import consul_service, eventually, timed, unavailable

Configure = Callable[..., None]


def first_call(service, limit: float = 1.0):
    """The cold-start call, allowed to wait for Consul's first answer."""
    return timed(service, limit=limit)


# -- changes reach requests -------------------------------------------------------------------


def test_register_critical_and_deregister_reach_requests_within_a_second(
    double: ConsulDouble, configure: Configure
) -> None:
    double.catalog.register("users", "users-1", address="10.0.0.1", port=8001)
    service = consul_service()
    assert first_call(service) == {("10.0.0.1", 8001): 1}

    double.catalog.register("users", "users-2", address="10.0.0.2", port=8002)
    eventually(service, lambda r: r == {("10.0.0.1", 8001): 1, ("10.0.0.2", 8002): 1})

    double.catalog.set_status("users-1", "critical")
    eventually(service, lambda r: r == {("10.0.0.2", 8002): 1})

    double.catalog.deregister("users-2")  # nothing left: Consul is believed at once
    result = eventually(service, unavailable)
    assert result.status == 503 and result.retry_after == 5
    assert "no healthy" in result.detail

    double.catalog.set_status("users-1", "passing")
    eventually(service, lambda r: r == {("10.0.0.1", 8001): 1})
    assert runtime.counters.get("consul.errors") == 0


def test_zero_passing_instances_is_a_503_at_once(
    double: ConsulDouble, configure: Configure
) -> None:
    double.catalog.register("users", "users-1", address="10.0.0.1", port=8001, status="critical")
    service = consul_service()
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as caught:
        instances_for(service, runtime.watchers)
    assert time.monotonic() - started < 0.5  # Consul answered; no waiting for staleness
    assert caught.value.retry_after == 5
    state = describe(service, runtime.watchers)
    assert (state.instances, state.error, state.stale) == ((), "", False)
    assert state.index >= 1 and state.updated_at is not None


def test_unknown_service_is_a_503(double: ConsulDouble, configure: Configure) -> None:
    assert unavailable(first_call(consul_service("nobody")))


# -- Consul failing ---------------------------------------------------------------------------


def test_consul_down_serves_last_known_good_then_503_after_max_stale(
    double: ConsulDouble, configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    configure(CONSUL_MAX_STALE=1.0)
    double.catalog.register("users", "users-1", address="10.0.0.1", port=8001)
    service = consul_service()
    assert first_call(service) == {("10.0.0.1", 8001): 1}
    caplog.set_level(logging.INFO, logger="django_gateway.discovery")

    double.stop()
    eventually(service, lambda r: describe(service, runtime.watchers).error != "")
    served_until = 0.0
    while True:
        result = timed(service)
        age = time.time() - describe(service, runtime.watchers).updated_at
        if unavailable(result):
            break
        assert result == {("10.0.0.1", 8001): 1}
        served_until = age
        assert age < 1.2, "last-known-good served past CONSUL_MAX_STALE"
        time.sleep(0.01)
    assert served_until > 0.8  # served for (about) the whole CONSUL_MAX_STALE
    assert "CONSUL_MAX_STALE" in result.detail and result.retry_after == 5
    state = describe(service, runtime.watchers)
    assert state.stale and state.instances == ((first := state.instances[0]),)
    assert (first.host, first.port) == ("10.0.0.1", 8001)
    assert state.error.startswith("Cannot connect to Consul at ")  # said so a person can act
    assert "CONSUL_HTTP_ADDR" in state.error and "HTTPConnectionPool" not in state.error
    assert double.address.split(":")[-1] not in result.detail  # the client is not told where

    failures = runtime.counters.get("consul.errors")
    assert failures >= 2  # retried with back-off ...
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "failed" in warnings[0].getMessage()  # ... logged once

    double.start()  # same port: Consul is back, and believed at once
    eventually(service, lambda r: r == {("10.0.0.1", 8001): 1}, within=1.5)
    assert (
        describe(service, runtime.watchers).error == ""
        and not describe(service, runtime.watchers).stale
    )
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_consul_down_at_cold_start_is_a_503_within_the_cold_start_timeout(
    double: ConsulDouble, configure: Configure
) -> None:
    double.stop()
    service = consul_service()
    started = time.monotonic()
    result = first_call(service, limit=1.0)
    assert unavailable(result) and result.retry_after == 5
    assert "did not answer" in result.detail and time.monotonic() - started < 1.0
    assert timed(service) is not None  # and the next request does not wait at all


def test_a_hanging_consul_delays_only_the_cold_start(
    double: ConsulDouble, configure: Configure
) -> None:
    configure(CONSUL_COLD_START_TIMEOUT=0.3)
    double.set_fault("blackhole")
    service = consul_service()
    started = time.monotonic()
    result = first_call(service, limit=0.6)
    assert unavailable(result) and time.monotonic() - started > 0.25
    for _ in range(5):  # the cold start is over: no request waits again
        assert unavailable(timed(service))


def test_index_going_backwards_restarts_the_loop(
    double: ConsulDouble, configure: Configure
) -> None:
    configure(CONSUL_WAIT=5.0)  # a watcher that kept its old index would miss changes for 5 s
    for n in range(5):
        double.catalog.register("users", f"users-{n}", address=f"10.0.0.{n + 1}", port=8000)
    service = consul_service()
    assert len(first_call(service)) == 5
    high = describe(service, runtime.watchers).index
    time.sleep(0.1)  # the watcher is now blocked on the high index
    double.catalog.reset_index(2)  # a snapshot restore
    eventually(service, lambda r: runtime.counters.get("consul.index_resets") == 1)
    time.sleep(0.1)
    double.catalog.register("users", "late", address="10.0.9.9", port=8000)
    eventually(service, lambda r: ("10.0.9.9", 8000) in r)
    assert describe(service, runtime.watchers).index < high


def test_rate_limit_spaces_queries_when_results_churn(
    double: ConsulDouble, configure: Configure
) -> None:
    configure(CONSUL_MIN_QUERY_INTERVAL=0.2)
    double.catalog.register("users", "users-1", address="10.0.0.1", port=8001)
    service = consul_service()
    first_call(service)
    started = len(double.requests)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # a change every 20 ms
        double.catalog.set_status("users-1", "passing", output=str(time.monotonic()))
        time.sleep(0.02)
    queries = len(double.requests) - started
    assert 3 <= queries <= 2 + 6  # burst of 2, then about one per 0.2 s


# -- what an answer resolves to ---------------------------------------------------------------


def test_weights_follow_the_instance_status(double: ConsulDouble, configure: Configure) -> None:
    weights = {"Passing": 10, "Warning": 2}
    double.catalog.register("users", "a", address="10.0.0.1", port=80, weights=weights)
    double.catalog.register("users", "b", address="10.0.0.2", port=80, weights=weights,
                            status="warning")  # fmt: skip
    double.catalog.register("users", "zero", address="10.0.0.3", port=80,
                            weights={"Passing": 0, "Warning": 0})  # fmt: skip
    assert first_call(consul_service()) == {("10.0.0.1", 80): 10}
    with_warning = consul_service(include_warning=True)
    assert first_call(with_warning) == {("10.0.0.1", 80): 10, ("10.0.0.2", 80): 2}


def test_warning_inclusion_never_includes_critical_or_maintenance(
    double: ConsulDouble, configure: Configure
) -> None:
    double.catalog.register("users", "ok", address="10.0.0.1", port=80)
    double.catalog.register("users", "warn", address="10.0.0.2", port=80, status="warning")
    double.catalog.register("users", "crit", address="10.0.0.3", port=80, status="critical")
    double.catalog.register("users", "maint", address="10.0.0.4", port=80)
    double.catalog.set_maintenance("maint")
    double.catalog.register("users", "dead-node", address="10.0.0.5", port=80, node="n5")
    double.catalog.set_node_health("n5", "critical")
    service = consul_service(include_warning=True)
    assert first_call(service) == {("10.0.0.1", 80): 1, ("10.0.0.2", 80): 1}
    double.catalog.set_status("warn", "critical")
    eventually(service, lambda r: r == {("10.0.0.1", 80): 1})


def test_tags_must_all_match(double: ConsulDouble, configure: Configure) -> None:
    double.catalog.register("users", "both", address="10.0.0.1", port=80, tags=["v2", "EU"])
    double.catalog.register("users", "v2", address="10.0.0.2", port=80, tags=["v2"])
    double.catalog.register("users", "eu", address="10.0.0.3", port=80, tags=["eu"])
    assert first_call(consul_service(tags=("v2", "eu"))) == {("10.0.0.1", 80): 1}
    assert set(first_call(consul_service(tags=("v2",)))) == {("10.0.0.1", 80), ("10.0.0.2", 80)}
    (query,) = [r for r in double.requests if r.params.get("tag") == ["eu", "v2"]][:1]
    assert query.param("passing") == "1"  # filtered by Consul, not here


def test_address_falls_back_to_the_node_and_may_be_a_name_or_ipv6(
    double: ConsulDouble, configure: Configure
) -> None:
    double.catalog.register("users", "node-addr", port=81, node="n1", node_address="10.0.0.11")
    double.catalog.register("users", "v6", address="fd00::7", port=82)
    double.catalog.register("users", "v6-bracketed", address="[fd00::8]", port=83)
    double.catalog.register("users", "named", address="users.service.internal", port=84)
    double.catalog.register("users", "portless", address="10.0.0.12")  # port 0: not dialable
    assert first_call(consul_service()) == {
        ("10.0.0.11", 81): 1,
        ("fd00::7", 82): 1,
        ("fd00::8", 83): 1,
        ("users.service.internal", 84): 1,
    }


def test_link_local_and_metadata_addresses_are_dropped_and_logged(
    double: ConsulDouble, configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    double.catalog.register("users", "ok", address="10.0.0.1", port=80)
    double.catalog.register("users", "imds", address="169.254.169.254", port=80)
    double.catalog.register("users", "v6ll", address="fe80::1", port=80)
    double.catalog.register("users", "gce", address="metadata.google.internal", port=80)
    with caplog.at_level(logging.WARNING, logger="django_gateway.discovery"):
        assert first_call(consul_service()) == {("10.0.0.1", 80): 1}
    (record,) = [r for r in caplog.records if "not routed" in r.getMessage()]
    for text in ("169.254.169.254", "fe80::1", "metadata.google.internal"):
        assert text in record.getMessage()


def test_link_local_addresses_are_routed_when_allowed(
    double: ConsulDouble, configure: Configure
) -> None:
    configure(ALLOW_LINK_LOCAL_UPSTREAMS=True)
    double.catalog.register("users", "ll", address="169.254.10.10", port=80)
    assert first_call(consul_service()) == {("169.254.10.10", 80): 1}


def test_datacenter_of_the_service_is_queried(double: ConsulDouble, configure: Configure) -> None:
    double.catalog.register("users", "home", address="10.0.0.1", port=80)
    double.catalog.register("users", "away", address="10.9.0.1", port=80, datacenter="dc2")
    assert first_call(consul_service(datacenter="dc2")) == {("10.9.0.1", 80): 1}
    assert first_call(consul_service()) == {("10.0.0.1", 80): 1}


# -- tokens -----------------------------------------------------------------------------------


@pytest.fixture
def acl_double() -> ConsulDouble:
    with ConsulDouble(acl_token="root-token") as server:
        server.catalog.register("users", "users-1", address="10.0.0.1", port=8001)
        yield server


def test_explicit_token_wins_over_the_environment(
    acl_double: ConsulDouble, configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token")
    configure(CONSUL_ADDRESS=acl_double.address, CONSUL_TOKEN="root-token")
    assert first_call(consul_service()) == {("10.0.0.1", 8001): 1}
    tokens = {r.header("X-Consul-Token") for r in acl_double.requests}
    assert tokens == {"root-token"}


def test_environment_token_is_used_without_a_setting(
    acl_double: ConsulDouble, configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "root-token")
    configure(CONSUL_ADDRESS=acl_double.address)
    assert first_call(consul_service()) == {("10.0.0.1", 8001): 1}


def test_acl_error_is_an_error_last_known_good_then_503(
    acl_double: ConsulDouble, configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    # MAX_STALE leaves room for a loaded machine between the error and the next look.
    configure(CONSUL_ADDRESS=acl_double.address, CONSUL_TOKEN="root-token", CONSUL_MAX_STALE=1.5)
    service = consul_service()
    assert first_call(service) == {("10.0.0.1", 8001): 1}
    with caplog.at_level(logging.WARNING, logger="django_gateway.discovery"):
        acl_double.acl_token = "rotated"  # our token no longer exists
        acl_double.catalog.register("users", "users-2", address="10.0.0.2", port=8002)  # wake
        eventually(service, lambda r: "ACL not found" in describe(service, runtime.watchers).error)
        # The query blocked when the token was rotated was authorised before it, so its answer
        # (with or without users-2) may be the last good one: whichever it was is served.
        known = {(i.host, i.port): i.weight for i in describe(service, runtime.watchers).instances}
        assert ("10.0.0.1", 8001) in known
        assert timed(service) == known
        eventually(service, unavailable, within=3.0)
    assert any("ACL not found" in r.getMessage() for r in caplog.records)
    assert runtime.counters.get("consul.errors") >= 1


def test_bad_token_at_cold_start_is_a_503_and_the_acl_error_is_for_operators(
    acl_double: ConsulDouble, configure: Configure
) -> None:
    configure(CONSUL_ADDRESS=acl_double.address, CONSUL_TOKEN="wrong")
    service = consul_service()
    result = first_call(service)
    assert unavailable(result) and "Consul did not answer" in result.detail
    assert "ACL" not in result.detail  # the client is not told how Consul is secured
    assert (
        "ACL not found" in describe(service, runtime.watchers).error
    )  # the admin panel and the log are
