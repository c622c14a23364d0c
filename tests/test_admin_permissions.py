"""Admin actions need the permission of what they do, not merely the right to see the list.

Enabling, disabling and revoking change rows (the change permission), resetting counters changes
a consumer's state (change on consumers), issuing a key creates one (add on API keys).
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from django_gateway import operations
from django_gateway.models import APIKey, Consumer, RateLimit, Route, Service

pytestmark = pytest.mark.django_db

ADMIN = "/admin/django_gateway"


@pytest.fixture
def staff(client):
    """``staff(*codenames)``: the client, logged in as a staff user holding just those."""

    def login(*codenames: str):
        user = get_user_model().objects.create_user("operator", password="pw", is_staff=True)
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
        client.force_login(user)
        return client

    return login


def actions(client, model: str) -> set[str]:
    response = client.get(f"{ADMIN}/{model}/")
    assert response.status_code == 200
    form = response.context["action_form"]  # None: no action at all
    return {name for name, _ in form.fields["action"].choices if name} if form else set()


@pytest.mark.parametrize("model", ["service", "route", "consumer", "ratelimit", "apikey"])
def test_viewers_get_no_actions(staff, model):
    assert actions(staff(f"view_{model}"), model) == set()


def test_a_viewer_cannot_disable_by_posting_the_action(staff):
    service = Service.objects.create(name="orders")
    route = Route.objects.create(name="orders", service=service, paths=["/orders"])
    client = staff("view_route")
    client.post(f"{ADMIN}/route/", {"action": "disable_selected", "_selected_action": [route.pk]})
    route.refresh_from_db()
    assert route.enabled


def test_a_viewer_cannot_revoke_keys(staff):
    key = operations.issue_key(Consumer.objects.create(username="alice"))[0]
    client = staff("view_apikey")
    client.post(f"{ADMIN}/apikey/", {"action": "revoke_selected", "_selected_action": [key.pk]})
    assert APIKey.objects.get(pk=key.pk).revoked_at is None


@pytest.mark.parametrize(
    ("codenames", "expected"),
    [
        (["view_consumer"], set()),
        (
            ["view_consumer", "change_consumer"],
            {"reset_rate_limits", "enable_selected", "disable_selected"},
        ),
        (["view_consumer", "add_apikey"], {"issue_api_key"}),
    ],
)
def test_consumer_actions_follow_permissions(staff, codenames, expected):
    assert actions(staff(*codenames), "consumer") == expected


def test_issuing_a_key_needs_the_add_permission_on_keys(staff):
    alice = Consumer.objects.create(username="alice")
    client = staff("view_consumer", "change_consumer")
    client.post(f"{ADMIN}/consumer/", {"action": "issue_api_key", "_selected_action": [alice.pk]})
    assert not APIKey.objects.exists()


def test_limits_follow_their_own_permissions(staff):
    limit = RateLimit.objects.create(limit=10, period="minute")
    client = staff("view_ratelimit", "change_ratelimit")
    assert actions(client, "ratelimit") == {"enable_selected", "disable_selected"}
    client.post(
        f"{ADMIN}/ratelimit/", {"action": "disable_selected", "_selected_action": [limit.pk]}
    )
    assert not RateLimit.objects.get(pk=limit.pk).enabled
