"""Configuration changes reach the per-process snapshot within the poll interval, without queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_gateway.models import Route
from django_gateway.runtime import runtime
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(runtime.snapshots, "clock", lambda: now[0])
    return now


def test_saved_route_goes_live_after_the_poll_interval(client, echo, clock):
    make_route(make_service(echo), paths=["/api"])
    assert client.get("/api/x").status_code == 200
    Route.objects.create(
        name="late", service_id=Route.objects.get().service_id, paths=["/django/late"]
    )
    assert (
        client.get("/django/late/x").content == b"django:GET:/django/late/x"
    )  # not yet: the poll is due in 0.2 s
    clock[0] += 0.25
    assert client.get("/django/late/x").status_code == 200
    assert echo.requests[-1].target == "/x"


def test_bulk_disable_from_the_operations_layer_bumps_the_version(client, echo, clock):
    from django_gateway.operations import set_enabled

    make_route(make_service(echo), paths=["/django"])
    assert client.get("/django/x").status_code == 200
    assert echo.request_count == 1
    set_enabled(Route.objects.all(), False)
    clock[0] += 0.25
    assert client.get("/django/x").content == b"django:GET:/django/x"


def test_requests_between_polls_run_no_queries(client, echo, clock):
    make_route(make_service(echo), paths=["/api"])
    client.get("/api/x")
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert client.get("/api/x").status_code == 200
    assert len(queries) == 0


def test_a_failed_refresh_keeps_the_last_snapshot(client, echo, clock, monkeypatch):
    make_route(make_service(echo), paths=["/api"])
    assert client.get("/api/x").status_code == 200

    def broken():
        raise ConnectionError("cache down")

    monkeypatch.setattr("django_gateway.snapshot.current_revision", broken)
    clock[0] += 5
    assert client.get("/api/x").status_code == 200


def test_cold_start_failure_is_503_for_everyone(client, monkeypatch):
    def broken(version=""):
        raise ConnectionError("database down")

    monkeypatch.setattr("django_gateway.snapshot.build_snapshot", broken)
    response = client.get("/django/x")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"


def test_changes_made_while_the_cache_is_down_still_arrive(client, echo, clock, settings):
    """With the cache unreachable, processes poll the database revision instead."""
    make_route(make_service(echo), paths=["/api"])
    assert client.get("/api/x").status_code == 200
    settings.GATEWAY = {
        **settings.GATEWAY,
        "CACHE_ALIAS": "down",
    }
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.1, "SOCKET_TIMEOUT": 0.1},
        },
    }
    Route.objects.create(
        name="late", service_id=Route.objects.get().service_id, paths=["/django/late"]
    )
    clock[0] += 0.25
    assert client.get("/django/late/x").status_code == 200
    assert echo.requests[-1].target == "/x"
