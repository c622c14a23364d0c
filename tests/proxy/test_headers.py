"""The header policy, from tables: what goes upstream and what comes back."""

from __future__ import annotations

import pytest

from django_gateway.proxy.headers import (
    ForwardContext,
    LocationRewrite,
    request_headers,
    response_headers,
    valid_request_id,
)

CTX = ForwardContext(
    peer="10.0.0.9",
    client_ip="10.0.0.9",
    peer_trusted=False,
    scheme="https",
    host="gw.example.com",
    port="443",
    prefix="/api",
    upstream_host="10.1.1.1:8080",
    preserve_host=False,
    request_id="req-1",
    request_id_header="X-Request-ID",
    via="django-gateway",
)


def upstream_view(incoming, ctx=CTX):
    out = request_headers(incoming, ctx)
    return out, {name.lower(): value for name, value in out}


@pytest.mark.parametrize(
    "name",
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-consumer-id",
        "x-consumer-username",
        "x-credential-identifier",
        "x-authenticated-userid",
        "x-anonymous-consumer",
        "expect",
        "content-length",
    ],
)
def test_request_side_drops(name):
    _, seen = upstream_view([(name, "v"), ("accept", "*/*")])
    assert name not in seen
    assert seen["accept"] == "*/*"


def test_headers_named_in_connection_are_dropped():
    _, seen = upstream_view([("connection", "close, X-Secret"), ("x-secret", "1"), ("x-ok", "2")])
    assert "x-secret" not in seen and seen["x-ok"] == "2"


def test_forwarding_headers_for_an_untrusted_peer():
    out, seen = upstream_view(
        [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-prefix", "/evil"),
            ("x-real-ip", "6.6.6.6"),
            ("via", "1.0 corp-proxy"),
            ("host", "gw.example.com"),
        ]
    )
    assert out[0] == ("Host", "10.1.1.1:8080")
    assert seen["x-forwarded-for"] == "1.2.3.4, 10.0.0.9"  # appended, never overwritten
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-host"] == "gw.example.com"
    assert seen["x-forwarded-port"] == "443"
    assert seen["x-forwarded-prefix"] == "/api"
    assert seen["x-real-ip"] == "10.0.0.9"
    assert seen["via"] == "1.0 corp-proxy, 1.1 django-gateway"
    assert seen["x-request-id"] == "req-1"
    assert [name.lower() for name, _ in out].count("host") == 1


def test_trusted_peer_keeps_its_forwarded_headers():
    ctx = _replace(peer_trusted=True)
    _, seen = upstream_view([("x-forwarded-proto", "http"), ("x-forwarded-host", "edge")], ctx)
    assert seen["x-forwarded-proto"] == "http" and seen["x-forwarded-host"] == "edge"


def _replace(**changes):
    from dataclasses import replace

    return replace(CTX, **changes)


def test_preserve_host_sends_the_client_host():
    out, _ = upstream_view([("host", "gw.example.com")], _replace(preserve_host=True))
    assert out[0] == ("Host", "gw.example.com")


def test_no_prefix_header_when_nothing_was_stripped_and_via_can_be_off():
    _, seen = upstream_view([], _replace(prefix="", via=""))
    assert "x-forwarded-prefix" not in seen and "via" not in seen
    _, seen = upstream_view([("via", "1.0 corp")], _replace(via=""))
    assert seen["via"] == "1.0 corp"  # left alone, not dropped


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc-123", True),
        ("a" * 200, True),
        ("a" * 201, False),
        ("", False),
        ("x y", False),
        ("x\r\nSet-Cookie: a", False),
        (None, False),
    ],
)
def test_request_id_validation(value, ok):
    assert valid_request_id(value) is ok


def client_view(upstream, location=None, ctx=CTX):
    return response_headers(upstream, ctx, location)


def test_response_side_drops_hop_by_hop_and_connection_tokens():
    out = client_view(
        [
            (b"Connection", b"X-Up"),
            (b"connection", b"X-Up2"),
            (b"X-Up2", b"2"),
            (b"X-Up", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Upgrade", b"h2c"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"Trailer", b"X-T"),
            (b"Content-Type", b"text/plain"),
        ]
    )
    names = [name.lower() for name, _ in out]
    assert names == ["content-type", "via", "x-request-id"]


def test_the_client_sees_one_request_id_the_gateways():
    out = client_view([(b"X-Request-ID", b"upstream-own"), (b"x-request-id", b"again")])
    assert [(n, v) for n, v in out if n.lower() == "x-request-id"] == [("X-Request-ID", "req-1")]


def test_content_type_travels_only_with_a_body():
    from django_gateway.proxy.headers import environ_headers

    bodiless = {"CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "", "HTTP_ACCEPT": "*/*"}
    assert dict(environ_headers(bodiless)) == {"accept": "*/*"}
    with_body = {**bodiless, "CONTENT_LENGTH": "3"}
    assert dict(environ_headers(with_body))["content-type"] == "text/plain"
    chunked = {**bodiless, "HTTP_TRANSFER_ENCODING": "chunked"}
    assert dict(environ_headers(chunked))["content-type"] == "text/plain"


def test_repeated_set_cookie_stay_separate_and_in_order():
    out = client_view([(b"Set-Cookie", b"a=1; Path=/"), (b"Set-Cookie", b"b=2, c=3")])
    assert [v for n, v in out if n == "Set-Cookie"] == ["a=1; Path=/", "b=2, c=3"]


def test_via_is_appended_on_responses():
    out = dict(client_view([(b"Via", b"1.1 upstream-cache")]))
    assert out["Via"] == "1.1 upstream-cache, 1.1 django-gateway"


def test_location_rewriter_is_applied_to_location_only():
    out = dict(client_view([(b"Location", b"/a"), (b"Link", b"</a>")], lambda v: "/x" + v))
    assert out["Location"] == "/x/a" and out["Link"] == "</a>"


REWRITE = LocationRewrite(
    upstream_origins=("http://10.1.1.1:8080",),
    upstream_base="/v1",
    gateway_origin="https://gw.example.com",
    client_base="/api",
)


@pytest.mark.parametrize(
    ("location", "rewritten"),
    [
        ("http://10.1.1.1:8080/v1/login?next=/x", "https://gw.example.com/api/login?next=/x"),
        ("http://10.1.1.1:8080/v1", "https://gw.example.com/api"),
        ("http://10.1.1.1:8080/other", "https://gw.example.com/other"),
        ("/v1/items/2", "/api/items/2"),
        ("https://elsewhere.example.org/v1/x", "https://elsewhere.example.org/v1/x"),
        ("http://10.1.1.1:80801/v1/x", "http://10.1.1.1:80801/v1/x"),
        ("//cdn.example.org/x", "//cdn.example.org/x"),
        ("?page=2", "?page=2"),
    ],
)
def test_location_rewrite(location, rewritten):
    assert REWRITE.rewrite(location) == rewritten


def test_identity_headers_are_appended_and_client_copies_dropped():
    from django_gateway.config import ConsumerConfig, Identity
    from django_gateway.proxy.headers import identity_headers

    consumer = ConsumerConfig(7, "alice", "crm-42", frozenset({"staff", "beta"}))
    identity = identity_headers(Identity(consumer, "gw_abc", consumer.groups))
    out, seen = upstream_view(
        [("x-consumer-id", "1"), ("x-credential-identifier", "forged")],
        _replace(identity=identity),
    )
    assert seen["x-consumer-id"] == "7" and seen["x-consumer-username"] == "alice"
    assert seen["x-consumer-custom-id"] == "crm-42"
    assert seen["x-consumer-groups"] == "beta, staff"
    assert seen["x-credential-identifier"] == "gw_abc"
    assert [n.lower() for n, _ in out].count("x-consumer-id") == 1
    anonymous = identity_headers(Identity(consumer, "", frozenset(), anonymous=True))
    assert ("X-Anonymous-Consumer", "true") in anonymous
    assert "X-Credential-Identifier" not in dict(anonymous)


def test_hidden_credentials_are_not_forwarded():
    _, seen = upstream_view(
        [("x-api-key", "secret"), ("authorization", "Bearer t"), ("cookie", "a=1; jwt=t; b=2")],
        _replace(hidden_headers=frozenset({"x-api-key"}), hidden_cookie="jwt"),
    )
    assert "x-api-key" not in seen
    assert seen["authorization"] == "Bearer t"
    assert seen["cookie"] == "a=1; b=2"
    _, seen = upstream_view([("cookie", "jwt=t")], _replace(hidden_cookie="jwt"))
    assert "cookie" not in seen


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("apikey=s&a=%2F&b=1", "a=%2F&b=1"),
        ("a=1&apikey=s&apikey=t&&c", "a=1&&c"),
        ("api%6Bey=s&x=1", "x=1"),
        ("apikeyx=1", "apikeyx=1"),
    ],
)
def test_hidden_query_parameter_is_removed_and_the_rest_kept_byte_for_byte(query, expected):
    from django_gateway.proxy.plan import without_query_param

    assert without_query_param(query, "apikey") == expected
