"""What the admin pages hold and in which order, without a browser (tests/browser/ checks the fit).

The route form opens with Matching and ends with Origin; the service page's route rows edit only
name, paths, priority and enabled and keep everything else; the key and limit rows show short
columns; the "Sync from Consul now" button shows only where Consul is used.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings as django_settings

from django_gateway import operations
from django_gateway.models import APIKey, Consumer, RateLimit, Route, Service

pytestmark = pytest.mark.django_db

ADMIN = "/admin/django_gateway"
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"


def fieldset_titles(page: str) -> list[str]:
    return re.findall(r'<h2 id="fieldset-[^"]*" class="fieldset-heading">([^<]+)</h2>', page)


def folded(page: str, title: str) -> bool:
    """Whether the fieldset titled ``title`` comes closed (a <details> around its heading)."""
    heading = re.search(
        rf'(<details><summary>\s*)?<h2 [^>]*class="fieldset-heading">{title}<', page
    )
    assert heading, f"no fieldset {title!r}"
    return heading.group(1) is not None


# --- the route form ---------------------------------------------------------------------------


def test_route_form_starts_with_matching_and_ends_with_origin(admin_client):
    service = Service.objects.create(name="orders")
    route = Route.objects.create(name="orders", service=service, paths=["/orders"])
    page = admin_client.get(f"{ADMIN}/route/{route.pk}/change/").content.decode()
    assert fieldset_titles(page) == [
        "Matching",
        "Forwarding",
        "Authentication and access",
        "Overrides",
        "Origin",
    ]
    assert folded(page, "Origin") and folded(page, "Overrides")  # an operator's, no overrides
    add_page = admin_client.get(f"{ADMIN}/route/add/").content.decode()
    assert "Origin" not in fieldset_titles(add_page)


def test_origin_and_overrides_open_when_they_say_something(admin_client):
    service = Service.objects.create(name="orders", discovery="consul", source="consul")
    route = Route.objects.create(
        name="consul-orders", service=service, paths=["/o"], source="consul", timeout=3.0
    )
    page = admin_client.get(f"{ADMIN}/route/{route.pk}/change/").content.decode()
    assert not folded(page, "Origin") and not folded(page, "Overrides")
    assert 'name="max_response_duration"' in page


# --- the service page -------------------------------------------------------------------------


def test_service_form_groups_consul_fields_for_the_script(admin_client):
    page = admin_client.get(f"{ADMIN}/service/add/").content.decode()
    assert 'class="module aligned gateway-consul"' in page
    assert "django_gateway/service_form.js" in page and "django_gateway/admin.css" in page
    assert fieldset_titles(page)[:3] == ["Discovery", "Consul", "Load balancing"]
    assert "Live instances" not in fieldset_titles(page)  # nothing to show before it exists


def service_page_data(service: Service, rows: list[dict[str, str]]) -> dict[str, str]:
    """The service form as the browser posts it, with ``rows`` as its route rows."""
    data = {
        "name": service.name,
        "protocol": "http",
        "path": "",
        "enabled": "on",
        "discovery": "static",
        "load_balancing": "round_robin",
        "hash_on": "ip",
        "connect_timeout": "5",
        "read_timeout": "60",
        "timeout": "120",
        "retries": "2",
        "tls_verify": "on",
        "targets-TOTAL_FORMS": "0",
        "targets-INITIAL_FORMS": "0",
        "routes-TOTAL_FORMS": str(len(rows)),
        "routes-INITIAL_FORMS": str(sum(1 for row in rows if "id" in row)),
        "rate_limits-TOTAL_FORMS": "0",
        "rate_limits-INITIAL_FORMS": "0",
    }
    for number, row in enumerate(rows):
        data.update({f"routes-{number}-{name}": value for name, value in row.items()})
    return data


def test_route_rows_edit_paths_and_keep_what_they_do_not_show(admin_client):
    service = Service.objects.create(name="orders")
    route = Route.objects.create(
        name="orders",
        service=service,
        paths=["/orders"],
        hosts=["api.example.com"],
        methods=["GET"],
        headers={"x-version": ["2"]},
        authentication="key",
        allowed_groups=["staff"],
    )
    page = admin_client.get(f"{ADMIN}/service/{service.pk}/change/").content.decode()
    assert 'name="routes-0-hosts"' not in page and "api.example.com" in page  # shown, read-only
    row = {"id": str(route.pk), "service": str(service.pk), "name": "orders", "priority": "5"}
    data = service_page_data(service, [{**row, "paths": "/orders\n/v2/orders", "enabled": "on"}])
    assert admin_client.post(f"{ADMIN}/service/{service.pk}/change/", data).status_code == 302
    route.refresh_from_db()
    assert route.paths == ["/orders", "/v2/orders"] and route.priority == 5
    assert (route.hosts, route.methods, route.headers) == (
        ["api.example.com"],
        ["GET"],
        {"x-version": ["2"]},
    )
    assert route.authentication == "key" and route.allowed_groups == ["staff"]


def test_route_rows_refuse_two_paths_on_a_line(admin_client):
    service = Service.objects.create(name="orders")
    row = {"service": str(service.pk), "name": "orders", "priority": "0", "enabled": "on"}
    data = service_page_data(service, [{**row, "paths": "/a, /b"}])
    response = admin_client.post(f"{ADMIN}/service/{service.pk}/change/", data)
    assert response.status_code == 200
    assert "one path per line" in response.content.decode()
    assert not Route.objects.exists()


def test_service_list_shows_a_few_targets(admin_client):
    service = Service.objects.create(name="orders")
    for last in range(1, 6):
        service.targets.create(host=f"10.0.0.{last}", port=8080)
    page = admin_client.get(f"{ADMIN}/service/").content.decode()
    assert "10.0.0.2:8080" in page and "and 3 more" in page and "10.0.0.5" not in page


# --- "Sync from Consul now" -------------------------------------------------------------------


@pytest.fixture
def no_consul_address(settings):
    """No agent address in the settings (the suite clears CONSUL_HTTP_ADDR for every test)."""
    settings.GATEWAY = {**django_settings.GATEWAY, "CONSUL_ADDRESS": None}


def test_no_sync_button_without_consul(admin_client, no_consul_address):
    Service.objects.create(name="orders")
    assert "Sync from Consul now" not in admin_client.get(f"{ADMIN}/service/").content.decode()


def test_sync_button_once_a_service_uses_consul(admin_client, no_consul_address):
    Service.objects.create(name="users", discovery="consul")
    assert "Sync from Consul now" in admin_client.get(f"{ADMIN}/service/").content.decode()


@pytest.mark.parametrize("where", ["setting", "environment"])
def test_sync_button_when_an_agent_is_configured(admin_client, settings, monkeypatch, where):
    """A first import needs the button before any service comes from Consul."""
    if where == "setting":
        settings.GATEWAY = {**django_settings.GATEWAY, "CONSUL_ADDRESS": "consul.internal:8500"}
    else:
        monkeypatch.setenv("CONSUL_HTTP_ADDR", "consul.internal:8500")
    assert "Sync from Consul now" in admin_client.get(f"{ADMIN}/service/").content.decode()


# --- keys and limits --------------------------------------------------------------------------


def test_key_rows_say_status_with_its_date(admin_client):
    alice = Consumer.objects.create(username="alice")
    active = operations.issue_key(alice)[0]
    revoked = operations.issue_key(alice, name="old")[0]
    operations.revoke_keys(APIKey.objects.filter(pk=revoked.pk))
    for url in (f"{ADMIN}/apikey/", f"{ADMIN}/consumer/{alice.pk}/change/"):
        page = admin_client.get(url).content.decode()
        assert re.search(r'field-status">\s*(<p>)?revoked \w', page), url
        assert re.search(r'field-status">\s*(<p>)?active<', page), url
        assert active.prefix in page and "never" in page


def test_limit_rows_use_short_labels_and_the_list_short_columns(admin_client):
    service = Service.objects.create(name="orders")
    route = Route.objects.create(name="orders", service=service, paths=["/orders"])
    RateLimit.objects.create(
        route=route, limit=50, period="month", limit_by="header", header_name="X-Tenant"
    )
    page = admin_client.get(f"{ADMIN}/route/{route.pk}/change/").content.decode()
    assert '<option value="month" selected>month</option>' in page
    assert '<option value="ip">client IP</option>' in page
    listing = admin_client.get(f"{ADMIN}/ratelimit/").content.decode()
    assert "50/month" in listing and "header <code>X-Tenant</code>" in listing


def test_limit_pages_warn_while_counting_per_process(admin_client, settings):
    settings.CACHES = {**settings.CACHES, "gw-local": {"BACKEND": LOCMEM}}
    settings.GATEWAY = {
        **django_settings.GATEWAY,
        "RATE_LIMIT_CACHE_ALIAS": "gw-local",
        "RATE_LIMIT_LOCAL_FALLBACK": True,
    }
    for url in (f"{ADMIN}/ratelimit/", f"{ADMIN}/ratelimit/add/"):
        assert "counted in each process&#x27;s memory" in admin_client.get(url).content.decode()
