"""Verified tokens are remembered per snapshot: one signature check per token, time claims and
configuration changes still enforced on every request."""

from __future__ import annotations

import time

import pytest

from django_gateway.auth import jwt as gateway_jwt
from django_gateway.models import JWTCredential
from django_gateway.runtime import runtime
from django_gateway.testing.state import reset_gateway_state
from tests.auth.test_jwt import add_credential, call, configure, sign

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_brute_force(settings):
    configure(settings, AUTH_FAILURE_LIMIT=0)


@pytest.fixture
def route(echo):
    from tests.conftest import make_route, make_service

    return make_route(make_service(echo), paths=["/api"], authentication="jwt")


@pytest.fixture
def verifications(monkeypatch):
    """Counts real signature verifications."""
    calls = []
    original = gateway_jwt._decoder.decode
    monkeypatch.setattr(
        gateway_jwt._decoder, "decode", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    return calls


def test_a_reused_token_is_verified_once(client, echo, route, verifications):
    add_credential()
    token = sign()
    assert [call(client, token).status_code for _ in range(3)] == [200, 200, 200]
    assert len(verifications) == 1
    assert [r.header("x-consumer-username") for r in echo.requests] == ["alice"] * 3


def test_a_remembered_token_still_expires(client, echo, route, settings):
    configure(settings, JWT_LEEWAY=0)
    add_credential()
    exp = int(time.time()) + 2  # whole seconds: at least one second left for the first request
    token = sign(exp=exp)
    assert call(client, token).status_code == 200
    time.sleep(exp - time.time() + 0.1)  # real time: PyJWT, behind the cache, reads it itself
    assert call(client, token).status_code == 401
    assert echo.request_count == 1


def test_a_configuration_change_forgets_remembered_tokens(client, echo, route, verifications):
    add_credential()
    token = sign()
    assert call(client, token).status_code == 200
    JWTCredential.objects.all().delete()
    reset_gateway_state()  # what the poll does within CONFIG_POLL_INTERVAL
    assert call(client, token).status_code == 401
    assert echo.request_count == 1


def test_size_zero_verifies_every_request(client, route, settings, verifications):
    configure(settings, JWT_CACHE_SIZE=0)
    add_credential()
    token = sign()
    assert [call(client, token).status_code for _ in range(3)] == [200, 200, 200]
    assert len(verifications) == 3


def test_the_cache_is_bounded(client, route, settings):
    configure(settings, JWT_CACHE_SIZE=2)
    add_credential()
    for n in range(4):
        assert call(client, sign(jti=f"t{n}")).status_code == 200

    assert len(runtime.snapshots.get().verified_tokens) == 2
