"""API keys through a real server, in both shells: what the server does to header names matters.

WSGI turns both ``X-API-Key`` and ``X_API_Key`` into ``HTTP_X_API_KEY``; gunicorn drops header
names with underscores so a client cannot smuggle one past a proxy that checks the dash form.
uvicorn passes them on, so the ASGI shell must drop them itself when it builds the environ.
Either way the gateway must never read a key from the underscore spelling.
"""

from __future__ import annotations

import pytest

from django_gateway import operations
from django_gateway.models import APIKey, Consumer
from django_gateway.testing.upstreams import EchoUpstream

from .conftest import GatewayServer, WireConfig

pytestmark = pytest.mark.wire


@pytest.fixture
def plaintext(wire: WireConfig, echo: EchoUpstream):
    consumer = Consumer.objects.create(username="wire-alice")
    _, plaintext = operations.issue_key(consumer)
    wire.route(echo, authentication="key")  # committed, and live in the worker when this returns
    yield plaintext
    APIKey.objects.filter(consumer=consumer).delete()
    wire.clear()
    consumer.delete()


def test_key_in_an_underscore_header_is_ignored(
    gateway_server: GatewayServer, echo: EchoUpstream, plaintext: str
):
    refused = gateway_server.get("/api/x", f"X_API_Key: {plaintext}")
    assert refused.status == 401, refused.body
    assert refused.header("www-authenticate") == 'Key realm="django-gateway"'
    assert refused.is_problem and plaintext.encode() not in refused.body
    assert echo.request_count == 0

    accepted = gateway_server.get("/api/x", f"X-API-Key: {plaintext}", f"X_API_Key: {plaintext}")
    assert accepted.status == 200, accepted.body
    (seen,) = echo.requests
    assert seen.header("x-consumer-username") == "wire-alice"
    assert seen.header("x-api-key") is None and seen.header("x_api_key") is None


def test_a_repeated_key_header_with_two_keys_is_refused(
    gateway_server: GatewayServer, echo: EchoUpstream, plaintext: str
):
    other = f"gw_abcdefghijkl_{'a' * 43}"
    refused = gateway_server.get("/api/x", f"X-API-Key: {plaintext}", f"X-API-Key: {other}")
    assert refused.status == 401
    assert echo.request_count == 0
    same = gateway_server.get("/api/x", f"X-API-Key: {plaintext}", f"X-API-Key: {plaintext}")
    assert same.status == 200
