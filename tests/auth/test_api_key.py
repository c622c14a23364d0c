"""API keys end to end: the gateway (Django's test client) → a real loopback upstream.

Every refusal is checked from both ends: the client's 401 and an upstream that saw nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_gateway import operations
from django_gateway.auth import api_key
from django_gateway.auth.key_store import KeyStore, generate_key, hash_key, parse_key
from django_gateway.models import APIKey, Consumer
from django_gateway.runtime import runtime
from django_gateway.testing.state import reset_gateway_state
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db

CHALLENGE = 'Key realm="django-gateway"'


@pytest.fixture(autouse=True)
def no_brute_force_limit(settings):
    """Failures here come from 127.0.0.1 in quick succession; the limit has tests of its own."""
    settings.GATEWAY = {**settings.GATEWAY, "AUTH_FAILURE_LIMIT": 0}


@pytest.fixture(autouse=True)
def forget_usage():
    yield
    runtime.usage.reset()


@pytest.fixture
def alice():
    return Consumer.objects.create(username="alice", custom_id="c-42", groups=["staff"])


@pytest.fixture
def issued(alice):
    """``(APIKey row, plaintext)`` for alice."""
    return operations.issue_key(alice, name="ci")


def key_route(echo, **fields):
    fields.setdefault("authentication", "key")
    route = make_route(make_service(echo), **fields)
    reset_gateway_state()  # the test transaction never commits, so no version bump: rebuild now
    return route


def assert_refused(response, echo, detail=None):
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == CHALLENGE
    assert response["Content-Type"] == "application/problem+json"
    problem = json.loads(response.content)
    assert problem["status"] == 401
    if detail:
        assert problem["detail"] == detail
    assert echo.request_count == 0


# -- key format ----------------------------------------------------------------------------


def test_generated_keys_have_the_documented_shape():
    plaintext, prefix, key_hash = generate_key()
    assert plaintext.startswith(f"gw_{prefix}_")
    assert len(prefix) == 12 and prefix.isalnum() and prefix == prefix.lower()
    assert len(plaintext) - len(f"gw_{prefix}_") >= 43  # 32 bytes, URL-safe base64
    assert key_hash == hashlib.sha256(plaintext.encode()).hexdigest() == hash_key(plaintext)
    assert parse_key(plaintext) == (prefix, plaintext)
    assert len({generate_key()[1] for _ in range(1000)}) == 1000


@pytest.mark.parametrize(
    "text",
    [
        "",
        "secret",
        "gw_",
        "gw_abcdefghijkl",
        "gw_abcdefghijkl_short",
        "gw_ABCDEFGHIJKL_" + "a" * 43,  # upper-case prefix
        "gw_abcdefghij01_" + "a" * 43,  # 0 and 1 are not base32
        "gw_abcdefghijkl_" + "a" * 42 + "=",
        "gw_abcdefghijkl_" + "a" * 43 + "\n",
        "gw_abcdefghijkl_" + "a" * 200,
        "xx_abcdefghijkl_" + "a" * 43,
    ],
)
def test_parse_key_refuses_anything_else(text):
    assert parse_key(text) is None


# -- the key store -------------------------------------------------------------------------


def test_key_store_is_a_bounded_lru_with_a_separate_negative_cache(alice):
    keys = [operations.issue_key(alice)[0] for _ in range(3)]
    store = KeyStore(size=2)
    for key in keys:
        assert store.get(key.prefix).id == key.pk
    with CaptureQueriesContext(connection) as queries:
        assert store.get(keys[2].prefix).id == keys[2].pk
        assert store.get(keys[1].prefix).id == keys[1].pk
    assert len(queries) == 0
    with CaptureQueriesContext(connection) as queries:
        assert store.get(keys[0].prefix).id == keys[0].pk  # evicted: one query
    assert len(queries) == 1
    for i in range(5):  # unknown prefixes do not push real keys out
        assert store.get(f"unknown{i:05d}") is None
    with CaptureQueriesContext(connection) as queries:
        assert store.get(keys[0].prefix) is not None
        assert store.get("unknown00004") is None
    assert len(queries) == 0
    assert len(store) == 4


def test_key_store_under_concurrent_lookups(alice):
    keys = [operations.issue_key(alice)[0] for _ in range(5)]
    store = KeyStore(size=3)
    for key in keys:  # the database is read here; the threads below exercise the cache
        store.get(key.prefix)
    cached = [k for k in keys if store._found.get(k.prefix)]
    errors = []

    def hammer():
        try:
            for _ in range(2000):
                for key in cached:
                    assert store.get(key.prefix).id == key.pk
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(store._found) == 3


# -- through the gateway -------------------------------------------------------------------


def test_valid_key_is_proxied_with_the_identity_and_without_the_key(client, echo, issued):
    key, plaintext = issued
    key_route(echo)
    response = client.get("/api/x?a=1", HTTP_X_API_KEY=plaintext)
    assert response.status_code == 200
    seen = echo.requests[0]
    assert seen.target == "/x?a=1"
    assert seen.header("x-consumer-id") == str(key.consumer_id)
    assert seen.header("x-consumer-username") == "alice"
    assert seen.header("x-consumer-custom-id") == "c-42"
    assert seen.header("x-consumer-groups") == "staff"
    assert seen.header("x-credential-identifier") == key.prefix
    assert seen.header("x-api-key") is None
    assert seen.header("x-anonymous-consumer") is None


def test_hide_credentials_off_keeps_the_key(client, echo, issued):
    key_route(echo, hide_credentials=False)
    assert client.get("/api/x", HTTP_X_API_KEY=issued[1]).status_code == 200
    assert echo.requests[0].header("x-api-key") == issued[1]


def test_missing_key_is_401_with_a_challenge(client, echo, issued):
    key_route(echo)
    assert_refused(client.get("/api/x"), echo)


def test_wrong_secret_with_a_real_prefix_is_401(client, echo, issued):
    key_route(echo)
    forged = f"gw_{issued[0].prefix}_{'A' * 43}"
    assert_refused(client.get("/api/x", HTTP_X_API_KEY=forged), echo, "Invalid API key.")


@pytest.mark.parametrize("text", ["nonsense", "gw_abcdefghijkl_" + "a" * 43, "x" * 5000])
def test_malformed_or_unknown_keys_are_401(client, echo, issued, text):
    key_route(echo)
    assert_refused(client.get("/api/x", HTTP_X_API_KEY=text), echo, "Invalid API key.")


def test_revocation_takes_effect_at_the_next_snapshot_poll(
    client, echo, issued, monkeypatch, django_capture_on_commit_callbacks
):
    key, plaintext = issued
    key_route(echo)
    now = [1000.0]
    monkeypatch.setattr(runtime.snapshots, "clock", lambda: now[0])
    assert client.get("/api/x", HTTP_X_API_KEY=plaintext).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):  # the version bump on commit
        assert operations.revoke_keys(APIKey.objects.filter(pk=key.pk)) == 1
    assert APIKey.objects.get(pk=key.pk).revoked_at is not None
    now[0] += 5  # past CONFIG_POLL_INTERVAL: the process sees the new version and rebuilds
    echo.clear()
    response = client.get("/api/x", HTTP_X_API_KEY=plaintext)
    assert_refused(response, echo, "This API key has been revoked.")
    assert operations.revoke_keys(APIKey.objects.all()) == 0  # already revoked


def test_expiry_needs_no_configuration_change(client, echo, issued, monkeypatch):
    key, plaintext = issued
    APIKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() + timedelta(hours=1))
    key_route(echo)
    assert client.get("/api/x", HTTP_X_API_KEY=plaintext).status_code == 200
    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr(api_key.timezone, "now", lambda: later)
    echo.clear()
    assert_refused(
        client.get("/api/x", HTTP_X_API_KEY=plaintext), echo, "This API key has expired."
    )


def test_a_key_in_the_query_string_is_not_read_by_default(client, echo, issued):
    key_route(echo)
    assert_refused(client.get(f"/api/x?api_key={issued[1]}"), echo)


def test_a_key_in_the_query_string_when_enabled(client, echo, issued, settings):
    settings.GATEWAY = {**settings.GATEWAY, "API_KEY_QUERY_PARAM": "api_key"}
    key_route(echo)
    response = client.get(f"/api/x?b=%2F&api_key={issued[1]}&a=1&&a=2;c")
    assert response.status_code == 200
    assert echo.requests[0].target == "/x?b=%2F&a=1&&a=2;c"
    assert echo.requests[0].header("x-credential-identifier") == issued[0].prefix


def test_two_different_keys_are_refused(client, echo, alice, issued, settings):
    settings.GATEWAY = {**settings.GATEWAY, "API_KEY_QUERY_PARAM": "api_key"}
    other = operations.issue_key(alice)[1]
    key_route(echo)
    response = client.get(f"/api/x?api_key={other}", HTTP_X_API_KEY=issued[1])
    assert_refused(response, echo, "Send one API key per request.")
    joined = client.get("/api/x", HTTP_X_API_KEY=f"{issued[1]}, {other}")  # a repeated header
    assert_refused(joined, echo, "Send one API key per request.")
    same = client.get(f"/api/x?api_key={issued[1]}", HTTP_X_API_KEY=issued[1])
    assert same.status_code == 200


def test_several_configured_headers(client, echo, issued, settings):
    settings.GATEWAY = {**settings.GATEWAY, "API_KEY_HEADERS": ["X-API-Key", "apikey"]}
    key_route(echo)
    assert client.get("/api/x", HTTP_APIKEY=issued[1]).status_code == 200
    assert echo.requests[0].header("apikey") is None


def test_disabled_consumer_is_refused(client, echo, alice, issued):
    operations.set_enabled(Consumer.objects.filter(pk=alice.pk), False)
    key_route(echo)
    response = client.get("/api/x", HTTP_X_API_KEY=issued[1])
    assert_refused(response, echo, "The consumer of this API key is disabled.")


def test_spoofed_identity_headers_are_replaced(client, echo, issued):
    key_route(echo)
    client.get(
        "/api/x",
        HTTP_X_API_KEY=issued[1],
        HTTP_X_CONSUMER_ID="1",
        HTTP_X_CONSUMER_USERNAME="admin",
        HTTP_X_CREDENTIAL_IDENTIFIER="forged",
        HTTP_X_ANONYMOUS_CONSUMER="false",
    )
    seen = echo.requests[0]
    assert seen.header_all("x-consumer-username") == ["alice"]
    assert seen.header_all("x-consumer-id") == [str(issued[0].consumer_id)]
    assert seen.header_all("x-credential-identifier") == [issued[0].prefix]
    assert seen.header("x-anonymous-consumer") is None


def test_no_database_query_per_request_after_the_first(client, echo, issued, settings):
    settings.GATEWAY = {**settings.GATEWAY, "CONFIG_POLL_INTERVAL": 3600}
    key_route(echo)
    assert client.get("/api/x", HTTP_X_API_KEY=issued[1]).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert client.get("/api/x", HTTP_X_API_KEY=issued[1]).status_code == 200
    assert list(queries) == []


def test_garbage_keys_reach_the_database_once(client, echo, issued, settings):
    settings.GATEWAY = {**settings.GATEWAY, "CONFIG_POLL_INTERVAL": 3600}
    key_route(echo)
    client.get("/api/x")  # builds the snapshot
    unknown = "gw_abcdefghijkl_" + "a" * 43
    with CaptureQueriesContext(connection) as first:
        assert client.get("/api/x", HTTP_X_API_KEY=unknown).status_code == 401
    with CaptureQueriesContext(connection) as again:
        assert client.get("/api/x", HTTP_X_API_KEY=unknown).status_code == 401
        assert client.get("/api/x", HTTP_X_API_KEY="not-a-key").status_code == 401
    assert len(first) == 1 and len(again) == 0


def test_anonymous_consumer_stands_in(client, echo, issued):
    guest = Consumer.objects.create(username="guest")
    key_route(echo, anonymous_consumer=guest)
    assert client.get("/api/x").status_code == 200
    assert client.get("/api/x", HTTP_X_API_KEY="gw_abcdefghijkl_" + "a" * 43).status_code == 200
    assert client.get("/api/x", HTTP_X_API_KEY=issued[1]).status_code == 200
    anonymous, bad_key, known = echo.requests
    for seen in (anonymous, bad_key):
        assert seen.header("x-anonymous-consumer") == "true"
        assert seen.header("x-consumer-username") == "guest"
        assert seen.header("x-credential-identifier") is None
    assert known.header("x-consumer-username") == "alice"
    assert known.header("x-anonymous-consumer") is None
    assert all(seen.header("x-api-key") is None for seen in echo.requests)


def test_every_key_is_hidden_when_the_anonymous_consumer_stands_in(
    client, echo, alice, issued, settings
):
    settings.GATEWAY = {**settings.GATEWAY, "API_KEY_QUERY_PARAM": "api_key"}
    other = operations.issue_key(alice)[1]
    key_route(echo, anonymous_consumer=Consumer.objects.create(username="guest"))
    response = client.get(f"/api/x?api_key={other}&keep=1", HTTP_X_API_KEY=issued[1])
    assert response.status_code == 200  # two keys: refused as credentials, so anonymous
    (seen,) = echo.requests
    assert seen.header("x-anonymous-consumer") == "true"
    assert seen.target == "/x?keep=1" and seen.header("x-api-key") is None


def test_a_use_is_noted_without_a_write(client, echo, issued):
    key_route(echo)
    with CaptureQueriesContext(connection) as queries:
        client.get("/api/x", HTTP_X_API_KEY=issued[1])
    assert not any("UPDATE" in q["sql"] for q in queries)
    assert issued[0].pk in runtime.usage.pending
    assert runtime.usage.flush() == 1
    assert APIKey.objects.get(pk=issued[0].pk).last_used_at is not None


def test_raw_keys_never_reach_the_logs_or_the_response(client, echo, issued, settings, caplog):
    settings.GATEWAY = {**settings.GATEWAY, "API_KEY_QUERY_PARAM": "api_key"}
    key, plaintext = issued
    key_route(echo)
    wrong = f"gw_{key.prefix}_{'B' * 43}"
    secret_part = plaintext[len(f"gw_{key.prefix}_") :]  # the secret may itself hold "_"
    with caplog.at_level(logging.DEBUG):
        responses = [
            client.get("/api/x", HTTP_X_API_KEY=plaintext),
            client.get(f"/api/x?api_key={plaintext}"),
            client.get("/api/x", HTTP_X_API_KEY=wrong),
            client.get("/api/x", HTTP_X_API_KEY="gw_abcdefghijkl_" + "C" * 43),
            client.get("/api/x", HTTP_X_API_KEY="garbage-" + "D" * 40),
        ]
    assert [r.status_code for r in responses] == [200, 200, 401, 401, 401]
    assert caplog.records
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.__dict__}" for r in caplog.records)
    for raw in (plaintext, secret_part, wrong, "C" * 43, "D" * 40):
        assert raw not in text
    for response in responses[2:]:
        assert b"gw_" not in response.content and b"DDDD" not in response.content


def test_a_database_outage_is_503_not_401(client, echo, issued, monkeypatch):
    from django.db import DatabaseError

    key_route(echo)
    client.get("/api/x")  # the snapshot is built while the database answers

    def down(*args, **kwargs):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(APIKey.objects, "filter", down)
    response = client.get("/api/x", HTTP_X_API_KEY=issued[1])
    assert response.status_code == 503 and response["Retry-After"]
    assert echo.request_count == 0
    monkeypatch.undo()
    assert client.get("/api/x", HTTP_X_API_KEY=issued[1]).status_code == 200  # nothing cached
