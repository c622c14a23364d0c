"""A synced route is what its tags declare, not its position: an operator's settings stay on the
path they were set for across re-syncs, as requests through the gateway show.

Each scenario registers ``billing`` in the Consul double with its instance on a real loopback echo
server, runs ``gateway_sync_services``, lets an operator change a route, re-tags the service, syncs
again and then sends requests through the gateway.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from django_gateway import operations
from django_gateway.models import Consumer, Route, Service
from django_gateway.runtime import runtime
from django_gateway.testing.consul import ConsulDouble
from django_gateway.testing.upstreams import EchoUpstream

pytestmark = pytest.mark.django_db


def sync(*args: str) -> tuple[str, str]:
    """``gateway_sync_services`` as an operator runs it; the gateway then sees the new rows."""
    out, err = StringIO(), StringIO()
    call_command("gateway_sync_services", *args, stdout=out, stderr=err)
    runtime.snapshots.invalidate()
    return out.getvalue(), err.getvalue()


def tag_billing(double: ConsulDouble, echo: EchoUpstream, *tags: str) -> None:
    """(Re-)register billing's one instance, on the echo server, with ``tags``."""
    double.catalog.register(
        "billing", "billing-1", address=echo.host, port=echo.port, tags=list(tags)
    )


def routes_on(path: str) -> list[Route]:
    return [r for r in Route.objects.order_by("name") if path in r.paths]


def operator_edits(route: Route, **values: Any) -> None:
    """What saving the route in the admin does: every field given, then ``save()``."""
    for key, value in values.items():
        setattr(route, key, value)
    route.full_clean()
    route.save()
    runtime.snapshots.invalidate()


@pytest.fixture
def key() -> str:
    return operations.issue_key(Consumer.objects.create(username="alice"))[1]


def test_operator_settings_stay_on_their_path_when_a_tag_is_added(
    client: Any, double: ConsulDouble, echo: EchoUpstream, key: str
) -> None:
    tag_billing(double, echo, "urlprefix-/billing", "urlprefix-/invoices")
    sync()
    (invoices,) = routes_on("/invoices")
    operator_edits(invoices, authentication="key")
    assert client.get("/invoices/7").status_code == 401
    assert client.get("/billing/7").status_code == 200

    tag_billing(double, echo, "urlprefix-/billing", "urlprefix-/invoices", "urlprefix-/accounts")
    out, err = sync()
    assert client.get("/invoices/7").status_code == 401
    assert client.get("/invoices/7", HTTP_X_API_KEY=key).status_code == 200
    assert client.get("/billing/7").status_code == 200
    assert client.get("/accounts/7").status_code == 200
    assert err == "" and "Created routes: 1." in out  # the other two routes are unchanged
    assert [r.target for r in echo.requests] == [
        "/billing/7",
        "/invoices/7",
        "/billing/7",
        "/accounts/7",
    ]
    assert routes_on("/invoices")[0].pk == invoices.pk  # the same row, not a copy of its settings

    out, err = sync()  # and nothing moves on the next run
    assert "Nothing to change" in out and err == ""


def test_operator_override_keeps_its_declaration_and_every_declared_path_is_routed(
    client: Any, double: ConsulDouble, echo: EchoUpstream
) -> None:
    tag_billing(double, echo, "urlprefix-/billing", "urlprefix-/invoices")
    sync()
    (invoices,) = routes_on("/invoices")
    operator_edits(invoices, authentication="key", operator_override=True)

    tag_billing(double, echo, "urlprefix-/billing", "urlprefix-/invoices", "urlprefix-/accounts")
    out, err = sync()
    assert client.get("/invoices/7").status_code == 401
    assert client.get("/billing/7").status_code == 200
    assert client.get("/accounts/7").status_code == 200
    assert [r.pk for r in routes_on("/invoices")] == [invoices.pk]  # no second route on /invoices
    assert err == ""
    assert f"= route {invoices.name} (operator override): left as it is" in out


def test_an_overridden_route_moved_elsewhere_reports_the_path_it_leaves_unrouted(
    client: Any, double: ConsulDouble, echo: EchoUpstream
) -> None:
    tag_billing(double, echo, "urlprefix-/billing", "urlprefix-/invoices")
    sync()
    (invoices,) = routes_on("/invoices")
    operator_edits(invoices, paths=["/bills"], operator_override=True)

    tag_billing(double, echo, "urlprefix-/billing", "urlprefix-/invoices", "urlprefix-/accounts")
    _out, err = sync()
    assert (
        f"not routed: billing: /invoices on any host ('urlprefix-/invoices'): route "
        f"{invoices.name} has operator override and routes /bills on any host instead" in err
    )
    assert [r.pk for r in routes_on("/invoices")] == []  # the override keeps its slot: no copy
    assert client.get("/bills/7").status_code == 200
    assert client.get("/accounts/7").status_code == 200
    assert client.get("/invoices/7").status_code == 404  # Django's own 404: not routed, but said


def test_the_same_path_declared_twice_by_one_service_is_a_conflict(
    client: Any, double: ConsulDouble, echo: EchoUpstream
) -> None:
    tag_billing(
        double,
        echo,
        "urlprefix-/billing",
        "urlprefix-/billing strip=/billing",
        "urlprefix-/invoices",
    )
    _out, err = sync()
    assert (
        "conflict: billing: /billing on any host is claimed by billing ('urlprefix-/billing') "
        "and billing ('urlprefix-/billing strip=/billing'); not written by this sync" in err
    )
    assert routes_on("/billing") == []
    assert client.get("/billing/7").status_code == 404
    assert client.get("/invoices/7").status_code == 200

    tag_billing(
        double, echo, "gateway.enable=true", "gateway.route=/invoices", "urlprefix-/invoices"
    )
    _out, err = sync()
    assert (
        "conflict: billing: /invoices on any host is claimed by billing (gateway.* tags) "
        "and billing ('urlprefix-/invoices'); not written by this sync" in err
    )
    (invoices,) = routes_on("/invoices")  # the route already there is left as it was
    assert invoices.enabled


def test_routes_an_older_version_named_by_position_keep_their_names_and_settings(
    client: Any, double: ConsulDouble, echo: EchoUpstream
) -> None:
    billing = Service.objects.create(
        name="billing", discovery="consul", consul_service="billing", source="consul"
    )
    for name, path, auth in (
        ("consul-billing", "/billing", "none"),
        ("consul-billing-2", "/invoices", "key"),
    ):
        Route.objects.create(
            name=name, service=billing, paths=[path], strip_path=False, source="consul",
            authentication=auth,
        )  # fmt: skip
    tag_billing(double, echo, "urlprefix-/billing", "urlprefix-/invoices", "urlprefix-/accounts")
    out, err = sync()
    assert client.get("/invoices/7").status_code == 401
    assert client.get("/billing/7").status_code == 200
    assert client.get("/accounts/7").status_code == 200
    assert err == ""
    assert "+ route consul-billing-accounts -> billing: paths=/accounts" in out
    assert [(r.name, r.paths) for r in Route.objects.order_by("name")] == [
        ("consul-billing", ["/billing"]),
        ("consul-billing-2", ["/invoices"]),
        ("consul-billing-accounts", ["/accounts"]),
    ]


def test_a_route_split_in_two_reports_the_part_that_leaves_the_operators_row(
    client: Any, double: ConsulDouble, echo: EchoUpstream
) -> None:
    tag_billing(
        double, echo, "gateway.enable=true", "gateway.route=/billing", "gateway.route=/invoices"
    )
    sync()
    operator_edits(Route.objects.get(name="consul-billing"), authentication="key")
    assert client.get("/invoices/7").status_code == 401

    tag_billing(double, echo, "urlprefix-/billing", "urlprefix-/invoices")
    _out, err = sync()
    assert err == (
        "moved: billing: /invoices on any host ('urlprefix-/invoices') was routed by route "
        "consul-billing, which keeps its settings; the new route consul-billing-invoices starts "
        "from the defaults (authentication, groups, IP rules, limits)\n"
    )
    assert client.get("/billing/7").status_code == 401  # the row, and its settings, kept /billing
    assert client.get("/invoices/7").status_code == 200
