"""The admin: forms show every validation error (never a 500), lists and bulk actions work."""

from __future__ import annotations

import pytest

from django_gateway.models import Route, Service, Target

pytestmark = pytest.mark.django_db


def service_form(**overrides):
    data = {
        "name": "orders",
        "protocol": "http",
        "path": "/v1",
        "connect_timeout": "5",
        "read_timeout": "60",
        "timeout": "120",
        "retries": "2",
        "tls_verify": "on",
        "enabled": "on",
        "discovery": "static",
        "load_balancing": "round_robin",
        "hash_on": "ip",
        "targets-TOTAL_FORMS": "1",
        "targets-INITIAL_FORMS": "0",
        "targets-0-host": "10.0.0.5",
        "targets-0-port": "8080",
        "targets-0-weight": "100",
        "targets-0-enabled": "on",
        "routes-TOTAL_FORMS": "0",
        "routes-INITIAL_FORMS": "0",
        "rate_limits-TOTAL_FORMS": "0",
        "rate_limits-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


def test_add_service_with_inline_target(admin_client):
    response = admin_client.post("/admin/django_gateway/service/add/", service_form())
    assert response.status_code == 302
    service = Service.objects.get(name="orders")
    assert [(t.host, t.port) for t in service.targets.all()] == [("10.0.0.5", 8080)]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("targets-0-host", "169.254.169.254", "link-local"),
        ("targets-0-port", "70000", "less than or equal to 65535"),
        ("path", "v1", "must start with"),
        ("timeout", "0", "greater than or equal to"),
    ],
)
def test_service_form_errors_are_shown(admin_client, field, value, message):
    response = admin_client.post(
        "/admin/django_gateway/service/add/", service_form(**{field: value})
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Service.objects.exists()


def route_form(service, **overrides):
    data = {
        "name": "orders",
        "service": str(service.pk),
        "paths": "/orders\n/v1/orders",
        "hosts": "",
        "methods": "get\npost",
        "headers": "X-Version: 2\nX-Version: 3",
        "priority": "0",
        "strip_path": "on",
        "enabled": "on",
        "authentication": "none",
        "hide_credentials": "on",
        "rate_limits-TOTAL_FORMS": "0",
        "rate_limits-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


def test_add_route_with_text_fields(admin_client):
    service = Service.objects.create(name="orders")
    response = admin_client.post("/admin/django_gateway/route/add/", route_form(service))
    assert response.status_code == 302
    route = Route.objects.get()
    assert route.paths == ["/orders", "/v1/orders"]
    assert route.methods == ["GET", "POST"]
    assert route.headers == {"x-version": ["2", "3"]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("paths", "orders", "must start with"),
        ("paths", "~(", "does not compile"),
        ("hosts", "*.com", "at least two labels"),
        ("methods", "FETCH", "is not an HTTP method"),
        ("headers", "X-Version 2", "Name: value"),
        ("headers", "X-Version: 2\r\nX-Evil: 1\rx", ""),
    ],
)
def test_route_form_errors_are_shown(admin_client, field, value, message):
    service = Service.objects.create(name="orders")
    response = admin_client.post(
        "/admin/django_gateway/route/add/", route_form(service, **{field: value})
    )
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert message in response.content.decode()
    assert not Route.objects.exists()


def test_regex_paths_may_hold_commas(admin_client):
    service = Service.objects.create(name="orders")
    form = route_form(service, paths="~/v\\d{1,3}/orders\n/orders")
    assert admin_client.post("/admin/django_gateway/route/add/", form).status_code == 302
    assert Route.objects.get().paths == [r"~/v\d{1,3}/orders", "/orders"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("paths", "/a, /b", "one path per line"),
        ("paths", "/a /b", "one path per line"),
        ("hosts", "a.localhost, b.localhost", "one per line"),
        ("methods", "GET, POST", "one per line"),
    ],
)
def test_every_list_field_takes_one_entry_per_line(admin_client, field, value, message):
    """A comma never splits one field and not the next: the entry is refused, saying why."""
    service = Service.objects.create(name="orders")
    response = admin_client.post(
        "/admin/django_gateway/route/add/", route_form(service, **{field: value})
    )
    assert response.status_code == 200
    assert message in response.context["adminform"].form.errors[field][0]
    assert not Route.objects.exists()
    lines = route_form(service, **{field: value.replace(", ", "\n").replace(" /", "\n/")})
    assert admin_client.post("/admin/django_gateway/route/add/", lines).status_code == 302


def test_route_list_columns_filters_and_search(admin_client):
    service = Service.objects.create(name="orders")
    Route.objects.create(name="orders-api", service=service, paths=["/orders"], methods=["GET"])
    Route.objects.create(name="other", service=service, paths=["/other"], enabled=False)
    page = admin_client.get("/admin/django_gateway/route/").content.decode()
    for text in ("orders-api", "/orders", "GET", "any"):
        assert text in page
    assert (
        "other"
        not in admin_client.get("/admin/django_gateway/route/?q=orders-api").content.decode()
    )
    filtered = admin_client.get("/admin/django_gateway/route/?enabled__exact=0").content.decode()
    assert "/other" in filtered and "orders-api" not in filtered


def test_bulk_disable_and_enable(admin_client):
    service = Service.objects.create(name="orders")
    routes = [
        Route.objects.create(name=f"r{i}", service=service, paths=[f"/r{i}"]) for i in range(3)
    ]
    response = admin_client.post(
        "/admin/django_gateway/route/",
        {"action": "disable_selected", "_selected_action": [r.pk for r in routes[:2]]},
        follow=True,
    )
    assert "Disabled 2" in response.content.decode()
    assert list(Route.objects.filter(enabled=True).values_list("name", flat=True)) == ["r2"]
    admin_client.post(
        "/admin/django_gateway/route/",
        {"action": "enable_selected", "_selected_action": [routes[0].pk]},
    )
    assert Route.objects.filter(enabled=True).count() == 2


def test_service_list_shows_targets(admin_client):
    service = Service.objects.create(name="orders")
    Target.objects.create(service=service, host="10.0.0.5", port=8080)
    assert "10.0.0.5:8080" in admin_client.get("/admin/django_gateway/service/").content.decode()


def test_migrations_are_complete():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("makemigrations", "django_gateway", "--check", "--dry-run", stdout=out)
