"""The service admin's discovery fields, live-instance panel and "Sync from Consul now" button."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from django_gateway.discovery import instances_for
from django_gateway.models import Route, Service, Target
from django_gateway.runtime import runtime
from tests.test_admin import route_form, service_form

pytestmark = pytest.mark.django_db

SYNC_URL = "/admin/django_gateway/service/sync-from-consul/"
LIST_URL = "/admin/django_gateway/service/"


def page(admin_client, url: str) -> str:
    response = admin_client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- the form --------------------------------------------------------------------------------


def test_discovery_and_balancing_fields_are_editable(admin_client):
    data = service_form(
        discovery="consul",
        consul_service="orders-v2",
        consul_tags="gateway.methods=GET,POST\nv2",
        consul_datacenter="dc2",
        consul_include_warning="on",
        load_balancing="consistent_hash",
        hash_on="header",
        hash_on_header="X-User",
        **{"targets-TOTAL_FORMS": "0"},
    )
    response = admin_client.post("/admin/django_gateway/service/add/", data)
    assert response.status_code == 302
    service = Service.objects.get()
    assert service.consul_tags == ["gateway.methods=GET,POST", "v2"]  # commas stay in a tag
    assert (service.discovery, service.consul_service, service.consul_datacenter) == (
        "consul",
        "orders-v2",
        "dc2",
    )
    assert service.consul_include_warning and service.hash_on_header == "X-User"
    assert service.source == "operator"
    text = page(admin_client, f"/admin/django_gateway/service/{service.pk}/change/")
    assert "Load balancing" in text and "Discovery" in text
    assert 'name="source"' not in text  # read-only


def test_invalid_balancing_is_a_form_error_not_a_500(admin_client):
    data = service_form(load_balancing="consistent_hash", hash_on="cookie", source="consul")
    response = admin_client.post("/admin/django_gateway/service/add/", data)
    assert response.status_code == 200
    assert "Name the cookie to hash on." in response.content.decode()
    assert not Service.objects.exists()
    response = admin_client.post(
        "/admin/django_gateway/service/add/", service_form(consul_tags="bad\x00tag")
    )
    assert response.status_code == 200


def test_route_source_is_read_only_and_override_editable(admin_client):
    service = Service.objects.create(name="orders", source="consul", discovery="consul")
    route = Route.objects.create(
        name="consul-orders", service=service, paths=["/o"], source="consul"
    )
    data = route_form(service, name="consul-orders", operator_override="on", source="operator")
    response = admin_client.post(f"/admin/django_gateway/route/{route.pk}/change/", data)
    assert response.status_code == 302
    route.refresh_from_db()
    assert route.operator_override and route.source == "consul"
    text = page(admin_client, f"/admin/django_gateway/route/{route.pk}/change/")
    assert "imported from Consul" in text and 'name="operator_override"' in text


# --- the live-instance panel -------------------------------------------------------------------


def test_static_service_panel_lists_targets_and_ejections(admin_client, settings):
    service = Service.objects.create(name="orders")
    Target.objects.create(service=service, host="10.0.0.5", port=8080, weight=100)
    Target.objects.create(service=service, host="10.0.0.6", port=8080, weight=50)
    Target.objects.create(service=service, host="10.0.0.7", port=8080, enabled=False)
    for _ in range(3):
        runtime.ejections.failure(("orders", "10.0.0.6", 8080))
    text = page(admin_client, f"/admin/django_gateway/service/{service.pk}/change/")
    assert "Static targets" in text
    assert (
        "<td>10.0.0.5</td><td>8080</td><td>100</td><td>configured</td><td>in rotation</td>" in text
    )
    assert "<td>10.0.0.6</td><td>8080</td><td>50</td><td>configured</td><td>ejected</td>" in text
    assert "10.0.0.7</td>" not in text


def test_consul_service_panel_shows_instances_index_and_age(admin_client, double):
    double.catalog.register("users", "users-1", port=8080, node="node-a", node_address="10.0.0.11")
    double.catalog.register("users", "users-2", address="10.0.1.7", port=9090, status="critical")
    service = Service.objects.create(name="users", discovery="consul")
    instances_for(
        runtime.snapshots.get().services["users"], runtime.watchers
    )  # waits for the watcher's first answer
    text = page(admin_client, f"/admin/django_gateway/service/{service.pk}/change/")
    index = double.catalog.service_index("users")
    assert f"Consul index {index}, last answer at " in text and " s ago)" in text
    assert "<td>10.0.0.11</td><td>8080</td><td>1</td><td>passing</td><td>in rotation</td>" in text
    assert "10.0.1.7" not in text  # critical: not routed


def test_consul_panel_says_when_no_instance_is_available(admin_client, double):
    service = Service.objects.create(name="ghost", discovery="consul")
    with pytest.raises(Exception):  # noqa: B017 - the 503 a request would get
        instances_for(runtime.snapshots.get().services["ghost"], runtime.watchers)
    text = page(admin_client, f"/admin/django_gateway/service/{service.pk}/change/")
    assert "No instance available: requests get 503." in text


def test_disabled_service_panel(admin_client):
    service = Service.objects.create(name="orders", enabled=False)
    text = page(admin_client, f"/admin/django_gateway/service/{service.pk}/change/")
    assert "Disabled: the gateway does not route to this service." in text


# --- "Sync from Consul now" --------------------------------------------------------------------


def test_sync_button_runs_the_sync_and_reports(admin_client, double):
    assert "Sync from Consul now" in page(admin_client, LIST_URL)
    double.catalog.register("orders", "orders-1", port=8080, tags=["urlprefix-/orders"])
    double.catalog.register("billing", "billing-1", port=8080, tags=["urlprefix-/orders"])
    response = admin_client.post(SYNC_URL, follow=True)
    assert response.redirect_chain == [(LIST_URL, 302)]
    shown = messages_of(response)
    assert shown[0] == "Sync from Consul: Created services: 2."
    assert shown[1].startswith("Reported: conflict: billing: /orders on any host is claimed")
    assert set(Service.objects.values_list("name", flat=True)) == {"billing", "orders"}
    response = admin_client.post(SYNC_URL, follow=True)
    assert messages_of(response)[0].startswith("Sync from Consul: Nothing to change")


def test_sync_button_reports_consul_errors_without_a_500(admin_client, double):
    double.stop()
    response = admin_client.post(SYNC_URL, follow=True)
    assert response.status_code == 200
    assert messages_of(response)[0].startswith("Sync from Consul failed: ")


def test_sync_needs_post_and_permissions(admin_client, client, double):
    assert admin_client.get(SYNC_URL).status_code == 405
    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_service"))
    client.force_login(viewer)
    assert "Sync from Consul now" not in page(client, LIST_URL)
    assert client.post(SYNC_URL).status_code == 403
    assert not Service.objects.exists()
