"""Rate limits in the admin: inline and standalone forms, validation on the form, live quota, reset."""

from __future__ import annotations

import pytest

from django_gateway.models import Consumer, RateLimit
from django_gateway.operations import issue_key
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db


def limit_form(**overrides):
    data = {
        "limit": "100",
        "period": "minute",
        "limit_by": "consumer",
        "header_name": "",
        "fault_tolerant": "on",
        "enabled": "on",
        "route": "",
        "service": "",
        "consumer": "",
    }
    data.update(overrides)
    return data


def test_global_limit_is_added_from_its_own_list(admin_client):
    response = admin_client.post("/admin/django_gateway/ratelimit/add/", limit_form())
    assert response.status_code == 302
    (row,) = RateLimit.objects.all()
    assert (row.limit, row.period, row.route, row.service) == (100, "minute", None, None)
    listing = admin_client.get("/admin/django_gateway/ratelimit/").content.decode()
    assert "100/minute by consumer on every route" in listing


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"limit_by": "header"}, "header_name", "Name the header"),
        ({"limit_by": "header", "header_name": "X Bad"}, "header_name", "not a valid HTTP header"),
        ({"header_name": "X-Tenant"}, "header_name", "Only used when limiting by header"),
        ({"limit": "0"}, "limit", "greater than or equal to 1"),
    ],
)
def test_invalid_limits_are_explained_on_the_form(admin_client, overrides, field, message):
    response = admin_client.post("/admin/django_gateway/ratelimit/add/", limit_form(**overrides))
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors[field])
    assert not RateLimit.objects.exists()


def test_route_and_service_together_are_refused(admin_client, echo):
    service = make_service(echo)
    route = make_route(service)
    form = limit_form(route=str(route.pk), service=str(service.pk))
    response = admin_client.post("/admin/django_gateway/ratelimit/add/", form)
    assert response.status_code == 200
    assert "not both" in " ".join(response.context["adminform"].form.errors["service"])


def test_limits_are_edited_inline_on_the_route(admin_client, echo):
    route = make_route(make_service(echo))
    page = admin_client.get(f"/admin/django_gateway/route/{route.pk}/change/").content.decode()
    assert "Rate limits on this route" in page and "rate_limits-TOTAL_FORMS" in page


@pytest.fixture
def consumer_with_usage(client, echo):
    route = make_route(make_service(echo), paths=["/api"], authentication="key")
    consumer = Consumer.objects.create(username="alice")
    key = issue_key(consumer)[1]
    RateLimit.objects.create(route=route, limit=5, period="minute", limit_by="consumer")
    RateLimit.objects.create(route=route, limit=50, period="hour", limit_by="credential")
    RateLimit.objects.create(route=route, limit=7, period="minute", limit_by="ip")  # not listed
    for _ in range(2):
        assert client.get("/api/x", HTTP_X_API_KEY=key).status_code == 200
    return consumer


def test_consumer_page_shows_the_live_quota(admin_client, consumer_with_usage):
    consumer = consumer_with_usage
    page = admin_client.get(f"/admin/django_gateway/consumer/{consumer.pk}/change/")
    html = page.content.decode()
    assert "3 of 5" in html  # by consumer: 2 of 5 spent
    assert f"API key {consumer.api_keys.get().prefix}" in html and "48 of 50" in html
    assert "of 7" not in html  # IP limits count clients, not consumers


def test_reset_action_gives_the_consumer_a_fresh_quota(admin_client, consumer_with_usage):
    consumer = consumer_with_usage
    response = admin_client.post(
        "/admin/django_gateway/consumer/",
        {"action": "reset_rate_limits", "_selected_action": [str(consumer.pk)]},
        follow=True,
    )
    assert "Reset 2 counter(s) of 1 consumer(s)." in response.content.decode()
    page = admin_client.get(f"/admin/django_gateway/consumer/{consumer.pk}/change/")
    assert "5 of 5" in page.content.decode() and "50 of 50" in page.content.decode()
