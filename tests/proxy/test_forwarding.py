"""What the client gets and what the upstream receives, through real loopback sockets."""

from __future__ import annotations

import gzip
import json

import pytest

from django_gateway.testing.upstreams import EchoUpstream, Reply, redirect_to, stream_bytes
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db


def body_of(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def test_path_is_stripped_and_joined_to_the_service_path(client, echo):
    make_route(make_service(echo, path="/v1"), paths=["/api"])
    client.get("/api/items/7")
    client.get("/api")
    assert [r.target for r in echo.requests] == ["/v1/items/7", "/v1"]


def test_path_is_kept_without_strip_path(client, echo):
    make_route(make_service(echo), paths=["/api"], strip_path=False)
    client.get("/api/items")
    assert echo.requests[0].target == "/api/items"


def test_canonical_path_is_forwarded_re_encoded(client, echo):
    make_route(make_service(echo), paths=["/api"])
    client.get("/api//a/./b/../c%20d")
    assert echo.requests[0].target == "/a/c%20d"


def test_query_string_is_forwarded_byte_for_byte(client, echo):
    make_route(make_service(echo), paths=["/api"])
    client.get("/api/x?b=%2F&a=1&&a=2;c")
    assert echo.requests[0].target == "/x?b=%2F&a=1&&a=2;c"


def test_forwarding_headers_and_host(client, echo):
    make_route(make_service(echo), paths=["/api"])
    response = client.get(
        "/api/x",
        HTTP_X_FORWARDED_FOR="203.0.113.7",
        HTTP_X_CONSUMER_ID="admin",
        REMOTE_ADDR="10.1.2.3",
    )
    seen = echo.requests[0]
    assert seen.header("host") == f"127.0.0.1:{echo.port}"
    assert seen.header("x-forwarded-for") == "203.0.113.7, 10.1.2.3"
    assert seen.header("x-forwarded-proto") == "http"
    assert seen.header("x-forwarded-host") == "testserver"
    assert seen.header("x-forwarded-prefix") == "/api"
    assert seen.header("x-real-ip") == "10.1.2.3"
    assert seen.header("via") == "1.1 django-gateway"
    assert seen.header("x-consumer-id") is None
    assert seen.header("x-request-id") == response["X-Request-ID"]
    assert len(response["X-Request-ID"]) == 32


def test_preserve_host(client, echo):
    make_route(make_service(echo), paths=["/api"], preserve_host=True)
    client.get("/api/x", HTTP_HOST="public.example.com")
    assert echo.requests[0].header("host") == "public.example.com"


def test_trusted_proxy_decides_the_client_address(client, echo, settings):
    settings.GATEWAY = {**settings.GATEWAY, "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    make_route(make_service(echo), paths=["/api"])
    client.get("/api/x", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.1, 10.0.0.7")
    client.get("/api/x", REMOTE_ADDR="192.0.2.5", HTTP_X_FORWARDED_FOR="198.51.100.1")
    trusted, untrusted = echo.requests
    assert trusted.header("x-real-ip") == "198.51.100.1"
    assert untrusted.header("x-real-ip") == "192.0.2.5"


def test_request_id_kept_when_well_formed_replaced_otherwise(client, echo):
    make_route(make_service(echo), paths=["/api"])
    kept = client.get("/api/x", HTTP_X_REQUEST_ID="abc-123")
    replaced = client.get("/api/x", HTTP_X_REQUEST_ID="bad id <script>")
    assert kept["X-Request-ID"] == "abc-123" == echo.requests[0].header("x-request-id")
    assert replaced["X-Request-ID"] != "bad id <script>"
    assert echo.requests[1].header("x-request-id") == replaced["X-Request-ID"]


def test_post_body_is_forwarded(client, echo):
    make_route(make_service(echo), paths=["/api"])
    response = client.post("/api/x", data=b'{"a": 1}', content_type="application/json")
    seen = echo.requests[0]
    assert response.status_code == 200
    assert (seen.method, seen.body, seen.header("content-length")) == ("POST", b'{"a": 1}', "8")
    assert seen.header("content-type") == "application/json"


def test_body_over_the_limit_is_413_before_the_upstream_is_contacted(client, echo):
    make_route(make_service(echo), paths=["/api"], max_body_size=10)
    response = client.post("/api/x", data=b"x" * 11, content_type="text/plain")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    assert echo.connections_accepted == 0


def test_chunked_body_without_a_terminated_input_is_411(client, echo):
    make_route(make_service(echo), paths=["/api"])
    response = client.generic("POST", "/api/x", b"", HTTP_TRANSFER_ENCODING="chunked")
    assert response.status_code == 411
    assert echo.connections_accepted == 0


def test_unknown_transfer_coding_is_501(client, echo):
    make_route(make_service(echo), paths=["/api"])
    response = client.generic("POST", "/api/x", b"", HTTP_TRANSFER_ENCODING="gzip, chunked")
    assert response.status_code == 501
    assert echo.connections_accepted == 0


def test_response_status_headers_and_body_pass_through(client):
    compressed = gzip.compress(b"hello " * 100)
    reply = Reply(
        status=201,
        reason="Made It",
        headers=[
            ("Content-Encoding", "gzip"),
            ("Set-Cookie", "a=1; Path=/"),
            ("Set-Cookie", "b=2; HttpOnly"),
            ("X-Up", "yes"),
        ],
        body=compressed,
    )
    with EchoUpstream(reply) as upstream:
        make_route(make_service(upstream), paths=["/api"])
        response = client.get("/api/x")
    assert (response.status_code, response.reason_phrase) == (201, "Made It")
    assert body_of(response) == compressed
    items = response.items()
    assert [v for n, v in items if n.lower() == "set-cookie"] == ["a=1; Path=/", "b=2; HttpOnly"]
    assert response["Content-Encoding"] == "gzip"
    assert "Content-Type" not in response  # Django's default is not added
    assert response["Via"] == "1.1 django-gateway"


def test_location_to_the_upstream_is_rewritten(client):
    with EchoUpstream() as upstream:
        upstream.responder = redirect_to(f"{upstream.url}/v1/login?next=%2Fx")
        make_route(make_service(upstream, path="/v1"), paths=["/api"])
        response = client.get("/api/private", HTTP_HOST="gw.example.com")
    assert response.status_code == 302
    assert response["Location"] == "http://gw.example.com/api/login?next=%2Fx"


def test_redirects_are_not_followed(client):
    with EchoUpstream(redirect_to("https://elsewhere.example.org/")) as upstream:
        make_route(make_service(upstream), paths=["/api"])
        response = client.get("/api/x")
    assert response["Location"] == "https://elsewhere.example.org/"
    assert upstream.request_count == 1


def test_head_gets_headers_and_no_body(client, echo):
    make_route(make_service(echo), paths=["/api"])
    response = client.head("/api/x")
    assert response.status_code == 200
    assert int(response["Content-Length"]) > 0
    assert body_of(response) == b""
    assert echo.requests[0].method == "HEAD"


def test_large_download_streams(client):
    size = 5 * 1024 * 1024
    with EchoUpstream(stream_bytes(size)) as upstream:
        make_route(make_service(upstream), paths=["/api"])
        response = client.get("/api/big")
        assert response.streaming
        assert sum(len(chunk) for chunk in response.streaming_content) == size


def test_empty_204(client):
    with EchoUpstream(Reply(204)) as upstream:
        make_route(make_service(upstream), paths=["/api"])
        response = client.delete("/api/x")
    assert response.status_code == 204 and body_of(response) == b""


def test_disabled_route_and_disabled_service_fall_through(client, echo):
    route = make_route(make_service(echo), paths=["/django"])
    assert json.loads(body_of(client.get("/django/x")))["target"] == "/x"
    route.enabled = False
    route.save()
    make_route(make_service(echo, name="off", enabled=False), name="r2", paths=["/django"])
    assert client.get("/django/x").content == b"django:GET:/django/x"


def test_methods_and_headers_select_the_route(client, echo):
    with EchoUpstream() as other:
        make_route(make_service(echo), paths=["/api"])
        make_route(
            make_service(other, name="v2"),
            name="v2",
            paths=["/api"],
            methods=["GET"],
            headers={"X-Version": ["2"]},
        )
        client.get("/api/x", HTTP_X_VERSION="2")
        client.post("/api/x", HTTP_X_VERSION="2")
        client.get("/api/x")
        assert (other.request_count, echo.request_count) == (1, 2)


def test_disallowed_host_is_400_for_routed_requests(client, echo, settings):
    settings.ALLOWED_HOSTS = ["gw.example.com"]
    make_route(make_service(echo), paths=["/api"])
    response = client.get("/api/x", HTTP_HOST="evil.example.com")
    assert response.status_code == 400
    assert echo.connections_accepted == 0


def test_connections_are_reused(client, echo):
    make_route(make_service(echo), paths=["/api"])
    for _ in range(5):
        assert client.get("/api/x").status_code == 200
    assert echo.connections_accepted == 1


def test_access_log_for_proxied_and_refused_requests(client, echo, caplog):
    make_route(make_service(echo), paths=["/api"])
    with caplog.at_level("INFO", logger="django_gateway.access"):
        client.get("/api/x?api_key=secret", HTTP_X_REQUEST_ID="req-9", HTTP_HOST="Gw.Test.")
        client.get("/api/a\\b%0d%0aforged")
    proxied, refused = [r for r in caplog.records if r.name == "django_gateway.access"]
    assert proxied.status == 200 and proxied.route == "route" and proxied.request_id == "req-9"
    assert '"GET /api/x" 200 host=gw.test route=route service=svc' in proxied.getMessage()
    assert "secret" not in proxied.getMessage()
    assert refused.status == 400 and refused.route == "-"
    assert "\n" not in refused.getMessage() and "\r" not in refused.getMessage()
