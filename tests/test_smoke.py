import json

from django_gateway.testing.upstreams import EchoUpstream


def test_proxies_get(client, api_route, echo: EchoUpstream):
    response = client.get("/api/items?x=1&x=2", HTTP_X_TEST="yes")
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["target"] == "/items?x=1&x=2"
    (seen,) = echo.requests
    assert seen.header("x-test") == "yes"


def test_unmatched_falls_through(client, api_route, echo):
    response = client.get("/django/x")
    assert response.content == b"django:GET:/django/x"
    assert echo.request_count == 0
