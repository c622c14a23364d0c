"""Per-route IP rules (before authentication) and consumer-group ACLs (after it)."""

from __future__ import annotations

import json

import pytest

from django_gateway.models import Consumer
from django_gateway.testing.state import reset_gateway_state
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db


def test_ip_allow_list(client, echo):
    make_route(make_service(echo), paths=["/api"], allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    assert client.get("/api/x", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/api/x", REMOTE_ADDR="2001:db8::5").status_code == 200
    refused = client.get("/api/x", REMOTE_ADDR="192.0.2.1")
    assert refused.status_code == 403
    assert refused["Content-Type"] == "application/problem+json"
    assert json.loads(refused.content)["status"] == 403
    assert echo.request_count == 2


def test_ip_deny_list_wins_over_allow(client, echo):
    make_route(
        make_service(echo), paths=["/api"], allowed_ips=["10.0.0.0/8"], denied_ips=["10.9.0.0/16"]
    )
    assert client.get("/api/x", REMOTE_ADDR="10.1.0.1").status_code == 200
    assert client.get("/api/x", REMOTE_ADDR="10.9.0.1").status_code == 403
    assert echo.request_count == 1


def test_ip_rules_use_the_trusted_proxy_client_address(client, echo, settings):
    settings.GATEWAY = {**settings.GATEWAY, "TRUSTED_PROXIES": ["127.0.0.0/8"]}
    make_route(make_service(echo), paths=["/api"], denied_ips=["198.51.100.0/24"])
    spoofed = client.get("/api/x", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert spoofed.status_code == 403
    untrusted = client.get("/api/x", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert untrusted.status_code == 200  # an untrusted peer cannot choose its address


def test_ip_rules_are_validated():
    from django.core.exceptions import ValidationError

    service = make_service()
    with pytest.raises(ValidationError) as info:
        make_route(service, paths=["/api"], allowed_ips=["10.0.0.0/33"])
    assert "allowed_ips" in info.value.message_dict
    route = make_route(service, name="ok", paths=["/ok"], denied_ips=["10.1.2.3", "10.0.0.0/8"])
    assert route.denied_ips == ["10.1.2.3/32", "10.0.0.0/8"]


def test_group_rules_need_an_authentication_mode():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as info:
        make_route(make_service(), paths=["/api"], allowed_groups=["staff"])
    assert "allowed_groups" in info.value.message_dict


def test_anonymous_consumer_outside_the_allowed_groups_gets_401(client, echo):
    anonymous = Consumer.objects.create(username="anonymous", groups=["public"])
    make_route(
        make_service(echo),
        paths=["/api"],
        authentication="key",
        anonymous_consumer=anonymous,
        allowed_groups=["staff"],
    )
    reset_gateway_state()
    refused = client.get("/api/x")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Key")
    assert echo.request_count == 0


def test_anonymous_consumer_in_an_allowed_group_passes_and_is_announced(client, echo):
    anonymous = Consumer.objects.create(username="anonymous", groups=["public"])
    make_route(
        make_service(echo),
        paths=["/api"],
        authentication="key",
        anonymous_consumer=anonymous,
        allowed_groups=["public"],
    )
    reset_gateway_state()
    assert client.get("/api/x", HTTP_X_CONSUMER_USERNAME="admin").status_code == 200
    seen = echo.requests[0]
    assert seen.header("x-anonymous-consumer") == "true"
    assert seen.header("x-consumer-username") == "anonymous"
    assert seen.header("x-consumer-groups") == "public"


def _consumer_with_key(username: str, groups: list[str]) -> str:
    from django_gateway.operations import issue_key

    _, key = issue_key(Consumer.objects.create(username=username, groups=groups))
    return key


def test_identified_consumer_outside_the_groups_gets_403(client, echo):
    staff_key = _consumer_with_key("alice", ["staff"])
    banned_key = _consumer_with_key("mallory", ["staff", "banned"])
    outsider_key = _consumer_with_key("bob", ["public"])
    make_route(
        make_service(echo),
        paths=["/api"],
        authentication="key",
        allowed_groups=["staff"],
        denied_groups=["banned"],
    )
    reset_gateway_state()
    assert client.get("/api/x", HTTP_X_API_KEY=staff_key).status_code == 200
    for key in (banned_key, outsider_key):
        refused = client.get("/api/x", HTTP_X_API_KEY=key)
        assert refused.status_code == 403
        assert "WWW-Authenticate" not in refused
    assert [r.header("x-consumer-username") for r in echo.requests] == ["alice"]


def test_a_refused_credential_is_stripped_before_the_anonymous_request_goes_on(client, echo):
    anonymous = Consumer.objects.create(username="anonymous")
    make_route(
        make_service(echo), paths=["/api"], authentication="any", anonymous_consumer=anonymous
    )
    reset_gateway_state()
    response = client.get(
        "/api/x", HTTP_X_API_KEY="gw_bogusbogusbo_notakey", HTTP_AUTHORIZATION="Bearer a.b.c"
    )
    assert response.status_code == 200
    seen = echo.requests[0]
    assert seen.header("x-anonymous-consumer") == "true"
    assert seen.header("x-api-key") is None and seen.header("authorization") is None


def test_repeated_bad_keys_are_answered_with_429_and_nothing_reaches_the_upstream(
    client, echo, settings, caplog
):
    settings.GATEWAY = {**settings.GATEWAY, "AUTH_FAILURE_LIMIT": 3, "AUTH_FAILURE_WINDOW": 60}
    good_key = _consumer_with_key("alice", [])
    make_route(make_service(echo), paths=["/api"], authentication="key")
    reset_gateway_state()
    bad = good_key[:-4] + "XXXX"
    with caplog.at_level("DEBUG"):
        statuses = [
            client.get("/api/x", HTTP_X_API_KEY=bad, REMOTE_ADDR="198.51.100.9").status_code
            for _ in range(4)
        ]
    assert statuses == [401, 401, 401, 429]
    blocked = client.get("/api/x", HTTP_X_API_KEY=good_key, REMOTE_ADDR="198.51.100.9")
    assert blocked.status_code == 429 and int(blocked["Retry-After"]) > 0
    assert (
        client.get("/api/x", HTTP_X_API_KEY=good_key, REMOTE_ADDR="198.51.100.10").status_code
        == 200
    )
    assert echo.request_count == 1
    logged = " ".join(str(r.getMessage()) + str(r.args) for r in caplog.records)
    assert bad not in logged and good_key not in logged
    from django.core.cache import cache

    cache.delete("django_gateway:authfail:198.51.100.9")
