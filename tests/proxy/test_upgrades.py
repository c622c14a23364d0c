"""A route that carries WebSocket upgrades, under the WSGI shell (the ASGI shell serves them:
tests/asgi/test_websocket.py)."""

from __future__ import annotations

import pytest

from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db


def test_the_wsgi_shell_refuses_a_websocket_upgrade_with_501(client, echo):
    make_route(make_service(echo), paths=["/api"], websocket=True)
    response = client.get("/api/chat", HTTP_UPGRADE="websocket", HTTP_CONNECTION="Upgrade")
    assert response.status_code == 501
    assert "ASGI" in response.json()["detail"]
    assert echo.requests == []
    assert client.get("/api/plain").status_code == 200  # plain requests to the route still pass
