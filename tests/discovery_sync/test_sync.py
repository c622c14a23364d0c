"""``gateway_sync_services`` against the Consul double, through py-consul, as a user runs it."""

from __future__ import annotations

import queue
import threading
import time
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from django_gateway.consul_sync.sync import plan_sync, sync_services, watch_catalog
from django_gateway.consul_sync.tags import parse_tags
from django_gateway.discovery.client import consul_client
from django_gateway.models import Route, Service
from django_gateway.runtime import runtime
from django_gateway.testing.consul import ConsulDouble
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db

ORDERS = ["gateway.enable=true", "gateway.route=/orders", "gateway.route=/v1/orders"]


def run(*args: str, **options: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("gateway_sync_services", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def register(double: ConsulDouble, name: str, *tags: str, instance: str = "") -> None:
    double.catalog.register(name, instance or f"{name}-1", port=8080, tags=list(tags))


def routes() -> dict[str, dict[str, Any]]:
    return {
        r.name: {
            "service": r.service.name,
            "paths": r.paths,
            "hosts": r.hosts,
            "enabled": r.enabled,
            "strip_path": r.strip_path,
        }
        for r in Route.objects.select_related("service")
    }


# --- import, idempotency, dry run ------------------------------------------------------------


def test_imports_services_and_tag_routes_then_changes_nothing(
    double, django_capture_on_commit_callbacks
):
    register(double, "orders", *ORDERS, "gateway.strip_prefix=true", "gateway.priority=10")
    register(double, "Billing_API")  # no tags: a service, no route
    with django_capture_on_commit_callbacks() as callbacks:
        out, err = run()
    assert len(callbacks) == 1  # one version bump for the whole sync
    assert err == ""
    assert "Created services: 2, created routes: 1." in out
    services = {s.name: s for s in Service.objects.all()}
    assert set(services) == {"orders", "billing_api"}  # "consul" itself is never imported
    orders = services["orders"]
    assert (orders.discovery, orders.consul_service, orders.source) == (
        "consul",
        "orders",
        "consul",
    )
    assert services["billing_api"].consul_service == "Billing_API"
    route = Route.objects.get()
    assert (route.name, route.source, route.paths, route.priority, route.strip_path) == (
        "consul-orders",
        "consul",
        ["/orders", "/v1/orders"],
        10,
        True,
    )
    with django_capture_on_commit_callbacks() as callbacks:
        out, err = run()
    assert callbacks == [] and err == ""
    assert out.strip() == "Nothing to change: 2 Consul service(s) already in sync."


def test_dry_run_prints_the_diff_and_writes_nothing(double):
    register(double, "orders", *ORDERS)
    out, _ = run("--dry-run")
    assert "Dry run: nothing is written." in out
    assert "+ service orders (Consul service 'orders')" in out
    assert "+ route consul-orders -> orders: paths=/orders,/v1/orders" in out
    assert "Would have: created services: 1, created routes: 1." in out
    assert not Service.objects.exists() and not Route.objects.exists()

    run()
    double.catalog.register(
        "orders", "orders-1", port=8080, tags=[*ORDERS[:2], "gateway.host=api.example.com"]
    )
    out, _ = run("--dry-run", "--prune")
    assert (
        "~ route consul-orders: paths: ['/orders', '/v1/orders'] -> ['/orders'], "
        "hosts: [] -> ['api.example.com']" in out
    )
    assert Route.objects.get().paths == ["/orders", "/v1/orders"]


def test_prune_disables_services_gone_from_consul_and_their_routes(double):
    register(double, "orders", *ORDERS)
    register(double, "users", "urlprefix-/users")
    run()
    double.catalog.deregister("users-1")
    out, _ = run()
    assert "Nothing to change" in out  # without --prune a vanished service stays as it was
    out, _ = run("--prune")
    assert "- service users: enabled: True -> False" in out
    assert "- route consul-users-users: enabled: True -> False" in out
    assert Service.objects.filter(name="users").values_list("enabled", flat=True).get() is False
    assert routes()["consul-users-users"]["enabled"] is False
    assert Service.objects.filter(name="orders", enabled=True).exists()
    # Back in Consul: enabled again, with its route.
    register(double, "users", "urlprefix-/users")
    run("--prune")
    assert Service.objects.get(name="users").enabled and routes()["consul-users-users"]["enabled"]


def test_operator_rows_are_never_touched(double):
    operator = make_service(name="orders", path="/v1")
    make_route(operator, name="consul-users", paths=["/people"])
    register(double, "orders", *ORDERS)
    register(double, "users", "gateway.enable=true", "gateway.route=/users")
    out, err = run("--prune")
    assert "name collision: orders: an operator-created service named 'orders' exists" in err
    assert "name collision: users" not in err  # the name is taken: the hashed one is used
    (users,) = Route.objects.filter(service__name="users")
    assert users.name.startswith("consul-users-") and len(users.name) == len("consul-users-") + 8
    assert f"+ route {users.name} -> users: paths=/users" in out
    operator.refresh_from_db()
    assert (operator.source, operator.discovery, operator.path) == ("operator", "static", "/v1")
    assert routes()["consul-users"] == {
        "service": "orders",
        "paths": ["/people"],
        "hosts": [],
        "enabled": True,
        "strip_path": True,
    }
    assert set(Service.objects.values_list("name", flat=True)) == {"orders", "users"}


# --- tags -----------------------------------------------------------------------------------


def test_gateway_tags_become_a_route(double):
    register(
        double,
        "orders",
        "GATEWAY.Enable=TRUE",
        "gateway.Route=/orders",
        "gateway.host=API.example.com",
        "gateway.host=*.example.org",
        "gateway.methods=get,POST",
        "gateway.preserve_host=true",
        "gateway.strip_prefix=/orders",
        "gateway.scheme=https",
    )
    run()
    route = Route.objects.get()
    assert route.paths == ["/orders"]
    assert route.hosts == ["*.example.org", "api.example.com"]
    assert route.methods == ["GET", "POST"]
    assert route.preserve_host and route.strip_path
    assert Service.objects.get().protocol == "https"


def test_gateway_tags_need_enable(double):
    register(double, "orders", "gateway.route=/orders")
    _, err = run()
    assert "ignored: orders: gateway.route=/orders: no gateway.enable=true tag" in err
    assert Service.objects.filter(name="orders").exists() and not Route.objects.exists()


def test_fabio_urlprefix_tags(double):
    register(
        double,
        "orders",
        "urlprefix-/orders strip=/orders",
        "urlprefix-api.example.com/v2/orders",
        "urlprefix-/",
    )
    run()
    assert routes() == {
        "consul-orders-root": {
            "service": "orders",
            "paths": ["/"],
            "hosts": [],
            "enabled": True,
            "strip_path": False,
        },
        "consul-orders-orders": {
            "service": "orders",
            "paths": ["/orders"],
            "hosts": [],
            "enabled": True,
            "strip_path": True,
        },
        "consul-orders-api-example-com-v2-orders": {
            "service": "orders",
            "paths": ["/v2/orders"],
            "hosts": ["api.example.com"],
            "enabled": True,
            "strip_path": False,
        },
    }


def test_invalid_tags_are_reported_and_skipped(double):
    register(
        double,
        "orders",
        "gateway.enable=true",
        "gateway.route=/orders",
        "gateway.route=/bad?query",
        "gateway.route=~/x(?=y)",
        "gateway.priority=high",
        "gateway.colour=blue",
    )
    register(
        double,
        "users",
        "urlprefix-/users proto=https",
        "urlprefix-/people strip=/p",
        "urlprefix-nope",
    )
    _out, err = run()
    assert (
        "invalid tag: orders: 'gateway.route=/bad?query': Path '/bad?query' must be a plain decoded path"
        in err
    )
    assert "'gateway.route=~/x(?=y)': Regex path '~/x(?=y)' uses a lookahead (?=...)" in err
    assert "invalid tag: orders: 'gateway.priority=high': expected an integer" in err
    assert "invalid tag: orders: 'gateway.colour=blue': unknown key 'colour'" in err
    assert (
        "invalid tag: users: 'urlprefix-/users proto=https': option 'proto' is not supported" in err
    )
    assert "'urlprefix-/people strip=/p': strip prefix /p is not the route's path" in err
    assert "'urlprefix-nope': expected urlprefix-/path or urlprefix-host/path" in err
    assert "Traceback" not in err
    assert routes() == {
        "consul-orders": {
            "service": "orders",
            "paths": ["/orders"],
            "hosts": [],
            "enabled": True,
            "strip_path": False,
        }
    }
    with pytest.raises(CommandError, match=r"problem\(s\) reported \(--strict\)"):
        run("--strict")


def test_parse_tags_is_pure_and_reports_enable_without_route():
    declaration = parse_tags("orders", ["gateway.enable=true", "gateway.enable"])
    assert [p.detail for p in declaration.problems] == [
        "'gateway.enable': expected gateway.<key>=<value>",
        "gateway.enable=true without a gateway.route or gateway.host tag",
    ]


# --- ownership rules -------------------------------------------------------------------------


def test_operator_override_survives_resync(double):
    register(double, "orders", *ORDERS, "urlprefix-/legacy")
    run()
    Route.objects.filter(name="consul-orders").update(paths=["/mine"], operator_override=True)
    Route.objects.filter(name="consul-orders-legacy").update(enabled=False, operator_override=True)
    Route.objects.filter(name="consul-orders").update(authentication="key")
    double.catalog.register(
        "orders", "orders-1", port=8080, tags=[*ORDERS[:2], "urlprefix-/legacy2"]
    )
    out, err = run("--prune")
    assert "= route consul-orders (operator override): left as it is" in out
    assert routes()["consul-orders"]["paths"] == ["/mine"]
    assert (  # the gateway.* route is still consul-orders: no second route, but said
        "not routed: orders: /orders on any host (gateway.* tags): route consul-orders has "
        "operator override and routes /mine on any host instead" in err
    )
    assert routes()["consul-orders-legacy"]["enabled"] is False  # operator-disabled stays so
    assert routes()["consul-orders-legacy2"]["paths"] == ["/legacy2"]
    double.catalog.deregister("orders-1")
    run("--prune")
    assert routes()["consul-orders"]["enabled"] is True  # override: not even prune disables it


def test_operator_tuning_of_imported_rows_survives(double):
    register(double, "orders", *ORDERS)
    run()
    Service.objects.filter(name="orders").update(retries=5, load_balancing="least_connections")
    Route.objects.filter(name="consul-orders").update(authentication="key")
    out, _ = run()
    assert "Nothing to change" in out
    assert Service.objects.get().retries == 5
    assert Route.objects.get().authentication == "key"


def test_a_route_whose_tag_is_gone_is_disabled(double):
    register(double, "orders", *ORDERS, "urlprefix-/legacy")
    run()
    double.catalog.register("orders", "orders-1", port=8080, tags=ORDERS)
    out, _ = run()
    assert "- route consul-orders-legacy: enabled: True -> False" in out
    assert Route.objects.filter(name="consul-orders-legacy", enabled=False).exists()


def test_conflicting_paths_are_reported_and_neither_written(double):
    register(double, "orders", *ORDERS)
    register(double, "billing", "urlprefix-/orders", "urlprefix-/billing")
    register(double, "users", "urlprefix-api.example.com/orders")  # another host set: fine
    _out, err = run()
    assert "conflict: billing: /orders on any host is claimed by billing and orders" in err
    assert "conflict: orders: /orders on any host is claimed by billing and orders" in err
    # /billing and the other host's /orders are written; /orders on any host is not
    assert set(routes()) == {"consul-billing-billing", "consul-users-api-example-com-orders"}


def test_conflict_with_an_operator_route_leaves_both_alone(double):
    make_route(make_service(name="legacy"), name="legacy", paths=["/orders"])
    register(double, "orders", *ORDERS)
    _, err = run()
    assert (
        "conflict: orders: /orders on any host is claimed by orders and route legacy (service legacy)"
        in err
    )
    assert set(routes()) == {"legacy"}


def test_tag_filter_is_and_and_case_insensitive(double):
    register(double, "orders", "public", "v2")
    register(double, "users", "public")
    register(double, "billing", "V2", "PUBLIC")
    run("--tag", "public", "--tag", "v2")
    assert set(Service.objects.values_list("name", flat=True)) == {"billing", "orders"}


def test_datacenter(double):
    double.catalog.register("orders", "orders-1", port=8080, datacenter="dc2")
    run("--datacenter", "dc2")
    assert Service.objects.get().consul_datacenter == "dc2"
    _, err = run()  # the default datacenter has no "orders": nothing, and the dc2 row is not its
    assert Service.objects.get().consul_datacenter == "dc2"
    register(double, "orders")
    _, err = run()
    assert "service 'orders' was imported from Consul service 'orders' (datacenter 'dc2')" in err


def test_consul_unreachable_is_a_command_error(double):
    double.stop()
    with pytest.raises(CommandError, match="Sync from Consul failed"):
        run()


def test_plan_sync_writes_nothing():
    plan = plan_sync({"orders": ORDERS, "users.v2": []})
    assert [c.obj.name for c in plan.changes] == ["orders", "users-v2", "consul-orders"]
    assert next(str(c) for c in plan.changes) == "+ service orders (Consul service 'orders')"
    assert not Service.objects.exists()


# --- watching ------------------------------------------------------------------------------


def test_watch_loop_sees_a_new_service_within_a_second(double):
    seen: queue.Queue = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(
        target=watch_catalog,
        args=(consul_client(), seen.put),
        kwargs={"stop": stop, "counters": runtime.counters},
        daemon=True,
    )
    thread.start()
    try:
        assert set(seen.get(timeout=2)) == {"consul"}
        time.sleep(0.2)  # the loop now blocks on the catalog index
        started = time.monotonic()
        register(double, "orders", *ORDERS)
        catalog = seen.get(timeout=1.5)
        assert time.monotonic() - started < 1.0
        assert sorted(catalog["orders"]) == sorted(ORDERS)
        sync_services(catalog=catalog)
        assert Route.objects.get().name == "consul-orders"
        double.catalog.reset_index(1)  # index goes backwards: the loop restarts, no busy loop
        register(double, "users", "urlprefix-/users")
        assert "users" in seen.get(timeout=2)
    finally:
        stop.set()
        thread.join(2)
    assert not thread.is_alive()


def test_watch_loop_backs_off_and_recovers(double):
    seen: queue.Queue = queue.Queue()
    errors: list[Exception] = []
    stop = threading.Event()
    double.stop()
    thread = threading.Thread(
        target=watch_catalog,
        args=(consul_client(), seen.put),
        kwargs={"stop": stop, "counters": runtime.counters, "on_error": errors.append},
        daemon=True,
    )
    thread.start()
    try:
        time.sleep(0.4)
        assert errors and seen.empty()
        double.start()
        assert "consul" in seen.get(timeout=2)
    finally:
        stop.set()
        thread.join(2)


@pytest.mark.django_db(transaction=True)
def test_watch_command_syncs_every_change_until_stopped(double):
    stop = threading.Event()
    out, err = StringIO(), StringIO()
    thread = threading.Thread(
        target=call_command,
        args=("gateway_sync_services", "--watch"),
        kwargs={"stop": stop, "stdout": out, "stderr": err},
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + 3
        while "Nothing to change" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        register(double, "orders", *ORDERS)
        while not Route.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert Route.objects.get().name == "consul-orders"
    finally:
        stop.set()
        thread.join(2)
    assert not thread.is_alive()
    assert "Stopped watching." in out.getvalue()
