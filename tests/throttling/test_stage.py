"""Rate limits through the gateway: statuses, headers, plans, scopes and what the upstream saw.

Requests go through Django's test client to a real echo upstream, and the counts live in the
suite's real Redis (the in-process engine when no Redis is reachable: same algorithm).
"""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from django_gateway.models import Consumer, RateLimit
from django_gateway.operations import issue_key
from django_gateway.runtime import runtime
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db


def limit(**fields) -> RateLimit:
    fields.setdefault("period", "minute")
    fields.setdefault("limit_by", "ip")
    row = RateLimit(**fields)
    row.full_clean()
    row.save()
    runtime.snapshots.invalidate()  # the version bump waits for a commit these tests never make
    return row


@pytest.fixture
def route(echo):
    return make_route(make_service(echo), paths=["/api"])


def statuses(client, path="/api/x", n=1, **extra):
    return [client.get(path, **extra) for _ in range(n)]


def test_admits_the_limit_then_answers_429(client, route, echo):
    limit(route=route, limit=3)
    responses = statuses(client, n=4)
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r["RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert all(r["RateLimit-Limit"] == "3" for r in responses)
    assert all(r["X-RateLimit-Limit-Minute"] == "3" for r in responses)
    assert 0 < int(responses[0]["RateLimit-Reset"]) <= 61
    refused = responses[3]
    assert refused["Content-Type"] == "application/problem+json"
    assert 1 <= int(refused["Retry-After"]) <= 61
    body = json.loads(refused.content)
    assert body["status"] == 429 and body["request_id"] == refused["X-Request-ID"]
    assert len(echo.requests) == 3  # the refused request never reached the upstream


def test_most_restrictive_limit_fills_the_standard_headers(client, route):
    limit(route=route, limit=10, period="second")
    limit(route=route, limit=2, period="hour")
    response = client.get("/api/x")
    assert response["RateLimit-Limit"] == "2" and response["RateLimit-Remaining"] == "1"
    assert response["X-RateLimit-Limit-Second"] == "10"
    assert response["X-RateLimit-Remaining-Second"] == "9"
    assert response["X-RateLimit-Limit-Hour"] == "2"
    assert response["X-RateLimit-Remaining-Hour"] == "1"


def test_a_refused_request_spends_nothing_in_the_other_limits(client, route):
    limit(route=route, limit=1, period="minute")
    limit(route=route, limit=5, period="hour")
    assert client.get("/api/x")["X-RateLimit-Remaining-Hour"] == "4"
    for _ in range(3):
        refused = client.get("/api/x")
        assert refused.status_code == 429
        assert refused["X-RateLimit-Remaining-Hour"] == "4"


def test_path_spellings_share_one_bucket(client, route):
    limit(route=route, limit=3)
    codes = [client.get(path).status_code for path in ("/api//x", "/api/./x", "/api/x", "/api/y")]
    assert codes == [200, 200, 200, 429]


def test_ipv4_clients_count_alone_and_ipv6_clients_by_64(client, route):
    limit(route=route, limit=1)
    assert client.get("/api/x", REMOTE_ADDR="192.0.2.1").status_code == 200
    assert client.get("/api/x", REMOTE_ADDR="192.0.2.2").status_code == 200
    assert client.get("/api/x", REMOTE_ADDR="2001:db8::1").status_code == 200
    assert client.get("/api/x", REMOTE_ADDR="2001:db8::ffff").status_code == 429
    assert client.get("/api/x", REMOTE_ADDR="2001:db8:0:1::1").status_code == 200


def test_limit_by_header_falls_back_to_the_client_address(client, route):
    limit(route=route, limit=1, limit_by="header", header_name="X-Tenant")
    assert client.get("/api/x", HTTP_X_TENANT="a").status_code == 200
    assert client.get("/api/x", HTTP_X_TENANT="a").status_code == 429
    assert client.get("/api/x", HTTP_X_TENANT="b").status_code == 200
    assert client.get("/api/x").status_code == 200  # no header: counted by IP
    assert client.get("/api/x").status_code == 429


@pytest.fixture
def key_route(echo):
    return make_route(make_service(echo), paths=["/api"], authentication="key")


def consumer_with_key(name: str) -> tuple[Consumer, str]:
    consumer = Consumer.objects.create(username=name)
    _, key = issue_key(consumer)
    return consumer, key


def test_consumers_count_separately_and_plans_replace_the_general_limit(client, key_route):
    _, basic_key = consumer_with_key("basic")
    gold, gold_key = consumer_with_key("gold")
    limit(route=key_route, limit=2, limit_by="consumer")
    limit(route=key_route, limit=4, limit_by="consumer", consumer=gold)
    limit(route=key_route, limit=3, period="hour", limit_by="consumer")  # gold has no hour plan

    basic = [client.get("/api/x", HTTP_X_API_KEY=basic_key).status_code for _ in range(3)]
    assert basic == [200, 200, 429]
    gold_responses = [client.get("/api/x", HTTP_X_API_KEY=gold_key) for _ in range(4)]
    assert [r.status_code for r in gold_responses] == [200, 200, 200, 429]
    assert gold_responses[0]["X-RateLimit-Limit-Minute"] == "4"  # the plan, not the general 2
    assert gold_responses[3]["X-RateLimit-Remaining-Hour"] == "0"  # the hour limit still holds


def test_limit_by_credential_counts_each_key(client, key_route):
    consumer, first = consumer_with_key("multi")
    _, second = issue_key(consumer)
    limit(route=key_route, limit=1, limit_by="credential")
    assert client.get("/api/x", HTTP_X_API_KEY=first).status_code == 200
    assert client.get("/api/x", HTTP_X_API_KEY=first).status_code == 429
    assert client.get("/api/x", HTTP_X_API_KEY=second).status_code == 200


def test_service_limits_are_shared_by_its_routes_and_global_ones_by_all(client, echo):
    service = make_service(echo)
    make_route(service, name="a", paths=["/a"])
    make_route(service, name="b", paths=["/b"])
    other = make_route(make_service(echo, name="other"), name="c", paths=["/c"])
    limit(service=service, limit=2)
    limit(limit=3, period="hour")  # global
    assert [client.get(p).status_code for p in ("/a", "/b", "/a")] == [200, 200, 429]
    response = client.get("/c")
    assert response.status_code == 200 and response["X-RateLimit-Remaining-Hour"] == "0"
    assert other.rate_limits.count() == 0 and client.get("/c").status_code == 429


def test_unlimited_routes_carry_no_headers(client, route, echo):
    other = make_route(make_service(echo, name="free"), name="free", paths=["/free"])
    limit(route=route, limit=1)
    response = client.get("/free")
    assert response.status_code == 200 and "RateLimit-Limit" not in response
    assert other.rate_limits.count() == 0


def test_headers_can_be_hidden(client, route, settings):
    settings.GATEWAY = {**settings.GATEWAY, "RATE_LIMIT_HEADERS": False}
    limit(route=route, limit=1)
    first, second = statuses(client, n=2)
    assert first.status_code == 200 and "RateLimit-Limit" not in first
    assert second.status_code == 429 and "Retry-After" in second
    assert not any(name.lower().startswith(("ratelimit", "x-ratelimit")) for name in second.headers)


def test_disabled_limits_do_not_apply_and_a_disabled_plan_restores_the_general_limit(
    client, key_route
):
    consumer, key = consumer_with_key("off")
    limit(route=key_route, limit=1, enabled=False)
    assert [client.get("/api/x", HTTP_X_API_KEY=key).status_code for _ in range(2)] == [200, 200]
    limit(route=key_route, limit=2, limit_by="consumer")
    limit(route=key_route, limit=50, limit_by="consumer", consumer=consumer, enabled=False)
    codes = [client.get("/api/x", HTTP_X_API_KEY=key).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


@override_settings(ROOT_URLCONF="tests.urls")
def test_django_views_are_never_limited(client, route):
    limit(limit=1)  # global
    assert client.get("/api/x").status_code == 200
    assert client.get("/api/x").status_code == 429
    assert client.get("/not-proxied/").status_code == 404  # Django answered, not the limiter


def test_the_limit_is_decided_before_the_body_is_looked_at(client, echo):
    route = make_route(make_service(echo), paths=["/api"], max_body_size=10)
    limit(route=route, limit=1)
    too_big = client.post("/api/x", data=b"x" * 100, content_type="application/octet-stream")
    assert too_big.status_code == 413 and too_big["RateLimit-Remaining"] == "0"
    refused = client.post("/api/x", data=b"x" * 100, content_type="application/octet-stream")
    assert refused.status_code == 429  # over the limit: the body's size no longer matters
    assert echo.requests == []


def test_a_fresh_project_without_redis_counts_per_process_with_headers(client, route, echo):
    """Django's default cache, GATEWAY left alone: a 3/minute limit is enforced (per process) with
    its headers, where it used to let 5 of 5 through with none."""
    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=locmem, GATEWAY={}):
        limit(route=route, limit=3)
        responses = statuses(client, n=5)
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    assert [r["RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0", "0"]
    assert len(echo.requests) == 3
