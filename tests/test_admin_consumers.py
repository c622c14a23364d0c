"""The admin for consumers and API keys, and the routes' authentication fields.

A key's plaintext appears exactly once, in the message of the action that issued it; the database
and every later page hold only its prefix and hash.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from django_gateway import operations
from django_gateway.models import APIKey, Consumer, Route, Service

pytestmark = pytest.mark.django_db

KEY = re.compile(r"gw_[a-z2-7]{12}_[A-Za-z0-9_-]{43}")
CONSUMERS = "/admin/django_gateway/consumer/"
KEYS = "/admin/django_gateway/apikey/"


def consumer_form(**overrides):
    data = {
        "username": "alice",
        "custom_id": "",
        "user": "",
        "groups": "staff\npartners\nbeta",
        "enabled": "on",
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
        "jwt_credentials-TOTAL_FORMS": "0",
        "jwt_credentials-INITIAL_FORMS": "0",
        "rate_limits-TOTAL_FORMS": "0",
        "rate_limits-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


def test_add_consumer_with_groups_as_lines(admin_client):
    response = admin_client.post(f"{CONSUMERS}add/", consumer_form())
    assert response.status_code == 302
    assert Consumer.objects.get().groups == ["staff", "partners", "beta"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"groups": "staff\nno spaces allowed"}, "is not a group name"),
        ({"username": ""}, "This field is required"),
        ({"custom_id": "taken"}, "already has this custom id"),
    ],
)
def test_consumer_form_errors_are_shown(admin_client, overrides, message):
    Consumer.objects.create(username="bob", custom_id="taken")
    response = admin_client.post(f"{CONSUMERS}add/", consumer_form(**overrides))
    assert response.status_code == 200
    page = response.content.decode()
    assert "errorlist" in page and message in page
    assert Consumer.objects.count() == 1


def test_consumer_list_search_and_key_count(admin_client):
    alice = Consumer.objects.create(username="alice", custom_id="c-1", groups=["staff"])
    Consumer.objects.create(username="bob", enabled=False)
    operations.issue_key(alice)
    revoked = operations.issue_key(alice)[0]
    operations.revoke_keys(APIKey.objects.filter(pk=revoked.pk))
    page = admin_client.get(CONSUMERS).content.decode()
    assert "alice" in page and "c-1" in page and "staff" in page
    assert re.search(r'field-key_count">1<', page)  # revoked keys are not counted
    assert "bob" not in admin_client.get(f"{CONSUMERS}?q=c-1").content.decode()
    assert "alice" not in admin_client.get(f"{CONSUMERS}?enabled__exact=0").content.decode()


def test_issue_key_action_shows_each_key_once_and_stores_only_its_hash(admin_client):
    alice = Consumer.objects.create(username="alice")
    bob = Consumer.objects.create(username="bob")
    response = admin_client.post(
        CONSUMERS, {"action": "issue_api_key", "_selected_action": [alice.pk, bob.pk]}
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]  # the browser keeps no copy of the page
    page = response.content.decode()
    rows = [row for row in page.split("<tr>") if KEY.search(row)]
    keys = {KEY.search(row).group(0): row for row in rows}
    assert len(keys) == 2
    assert not list(response.wsgi_request._messages)  # not parked in the message storage
    for plaintext, shown_row in keys.items():
        row = APIKey.objects.get(prefix=plaintext[3:15])
        assert row.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
        assert row.consumer.username in shown_row
        stored = [str(v) for v in APIKey.objects.filter(pk=row.pk).values().get().values()]
        assert plaintext not in stored and plaintext[16:] not in "".join(stored)
    # Never again: not on the next page, the key list, or the consumer's page.
    for url in (CONSUMERS, KEYS, f"{CONSUMERS}{alice.pk}/change/", f"{KEYS}{row.pk}/change/"):
        page = admin_client.get(url).content.decode()
        assert not KEY.search(page)
    assert row.prefix in admin_client.get(KEYS).content.decode()


def test_keys_cannot_be_typed_in(admin_client):
    assert admin_client.get(f"{KEYS}add/").status_code == 403
    alice = Consumer.objects.create(username="alice")
    key = operations.issue_key(alice)[0]
    page = admin_client.get(f"{CONSUMERS}{alice.pk}/change/").content.decode()
    assert key.prefix in page
    assert 'name="api_keys-0-prefix"' not in page and 'name="api_keys-0-key_hash"' not in page


def test_key_page_edits_name_and_expiry_only(admin_client):
    key = operations.issue_key(Consumer.objects.create(username="alice"))[0]
    expires = (timezone.now() + timedelta(days=7)).replace(microsecond=0)
    response = admin_client.post(
        f"{KEYS}{key.pk}/change/",
        {
            "name": "renamed",
            "expires_at_0": expires.strftime("%Y-%m-%d"),
            "expires_at_1": expires.strftime("%H:%M:%S"),
            "prefix": "forged",
            "key_hash": "0" * 64,
        },
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.name == "renamed" and key.expires_at is not None
    assert key.prefix != "forged" and key.key_hash != "0" * 64


def test_revoke_action(admin_client):
    alice = Consumer.objects.create(username="alice")
    keep, revoke = (operations.issue_key(alice)[0] for _ in range(2))
    response = admin_client.post(
        KEYS, {"action": "revoke_selected", "_selected_action": [revoke.pk]}, follow=True
    )
    assert "Revoked 1 key" in response.content.decode()
    assert APIKey.objects.get(pk=revoke.pk).revoked_at is not None
    assert APIKey.objects.get(pk=keep.pk).revoked_at is None
    revoked_page = admin_client.get(f"{KEYS}?revoked=yes").content.decode()
    assert revoke.prefix in revoked_page and keep.prefix not in revoked_page
    active_page = admin_client.get(f"{KEYS}?revoked=no").content.decode()
    assert keep.prefix in active_page and revoke.prefix not in active_page


def test_expired_filter_and_search(admin_client):
    alice = Consumer.objects.create(username="alice")
    old, fresh = (operations.issue_key(alice)[0] for _ in range(2))
    APIKey.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(days=1))
    expired = admin_client.get(f"{KEYS}?expired=yes").content.decode()
    assert old.prefix in expired and fresh.prefix not in expired
    assert "expired" in expired
    found = admin_client.get(f"{KEYS}?q={fresh.prefix}").content.decode()
    assert fresh.prefix in found and old.prefix not in found
    assert fresh.prefix in admin_client.get(f"{KEYS}?q=alice").content.decode()


def route_form(service, **overrides):
    data = {
        "name": "orders",
        "service": str(service.pk),
        "paths": "/orders",
        "hosts": "",
        "methods": "",
        "headers": "",
        "priority": "0",
        "strip_path": "on",
        "authentication": "key",
        "anonymous_consumer": "",
        "hide_credentials": "on",
        "allowed_groups": "staff\npartners",
        "denied_groups": "",
        "allowed_ips": "10.0.0.0/8\n192.0.2.7",
        "denied_ips": "",
        "enabled": "on",
        "rate_limits-TOTAL_FORMS": "0",
        "rate_limits-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


def test_route_authentication_fields(admin_client):
    service = Service.objects.create(name="orders")
    guest = Consumer.objects.create(username="guest")
    form = route_form(service, anonymous_consumer=str(guest.pk))
    page = admin_client.get("/admin/django_gateway/route/add/").content.decode()
    assert "Authentication and access" in page
    assert admin_client.post("/admin/django_gateway/route/add/", form).status_code == 302
    route = Route.objects.get()
    assert route.authentication == "key" and route.anonymous_consumer == guest
    assert route.allowed_groups == ["staff", "partners"]
    assert route.allowed_ips == ["10.0.0.0/8", "192.0.2.7/32"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"authentication": "none"}, "Group rules need an authenticated consumer"),
        ({"allowed_groups": "no spaces"}, "is not a group name"),
        ({"denied_ips": "10.0.0.0/33"}, "is not an IP address or network"),
        ({"authentication": "password"}, "Select a valid choice"),
    ],
)
def test_route_authentication_errors_are_shown(admin_client, overrides, message):
    service = Service.objects.create(name="orders")
    response = admin_client.post(
        "/admin/django_gateway/route/add/", route_form(service, **overrides)
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "errorlist" in page and message in page
    assert not Route.objects.exists()
