"""The route tester's engine: the winner is the matcher's, the reasons and the upstream are right."""

from __future__ import annotations

import json
import random

import pytest
from django.test import override_settings
from django.test.client import ClientHandler

from django_gateway.operations import (
    InvalidPath,
    InvalidRequest,
    explain_request,
    request_environ,
    route_rows,
)
from django_gateway.route_tester import Precedence, explain, precedence_key
from django_gateway.routing import RouteTable, _make_entry
from django_gateway.snapshot import build_snapshot
from tests.conftest import compiled_route, make_route, make_service

route = compiled_route


def why(routes, path="/api/x", host="api.example.com", method="GET", **environ) -> dict:
    """{route name: reason} for every loser, plus "winner": the winning route's name."""
    result = explain(RouteTable(routes), method, host, path, environ)
    reasons = {lost.route.name: lost.reason for lost in result.losers}
    return {"winner": result.match and result.match.route.name, **reasons}


# --- Precedence: the "outranked" reasons -------------------------------------------------------


def test_exact_host_beats_wildcard_beats_no_host():
    routes = [
        route(1, "/api"),
        route(2, "/api", hosts=["*.example.com"]),
        route(3, "/api", hosts=["api.example.com"]),
    ]
    assert why(routes) == {
        "winner": "r3",
        "r1": "outranked by r3: exact host beats no host (api.example.com vs *)",
        "r2": "outranked by r3: exact host beats wildcard host (api.example.com vs *.example.com)",
    }
    assert why(routes, host="www.example.com") == {
        "winner": "r2",
        "r1": "outranked by r2: wildcard host beats no host (*.example.com vs *)",
        "r3": "host www.example.com does not match ['api.example.com']",
    }
    assert why(routes, host="other.org")["winner"] == "r1"


def test_exact_host_wins_even_against_a_longer_prefix_and_higher_priority():
    routes = [route(1, "/api/x", priority=50), route(2, "/api", hosts=["api.example.com"])]
    assert why(routes)["r1"] == "outranked by r2: exact host beats no host (api.example.com vs *)"


def test_longer_wildcard_suffix_and_host_with_port():
    routes = [
        route(1, "/", hosts=["*.example.com"]),
        route(2, "/", hosts=["*.eu.example.com"]),
        route(3, "/", hosts=["api.eu.example.com"]),
        route(4, "/", hosts=["api.eu.example.com:8443"]),
    ]
    got = why(routes, host="shop.eu.example.com")
    assert got["winner"] == "r2"
    assert (
        got["r1"]
        == "outranked by r2: wildcard *.eu.example.com is more specific than *.example.com"
    )
    got = why(routes, host="api.eu.example.com:8443")
    assert got["winner"] == "r4"
    assert (
        got["r3"]
        == "outranked by r4: host api.eu.example.com:8443 is tried before api.eu.example.com"
    )


def test_wildcards_with_and_without_port_tie_on_the_host_rule():
    routes = [route(1, "/", hosts=["*.example.com"]), route(2, "/", hosts=["*.example.com:8080"])]
    result = explain(RouteTable(routes), "GET", "a.example.com:8080", "/x", {})
    (lost,) = result.losers
    first, second = result.match.route.hosts[0], lost.route.hosts[0]
    assert (
        lost.reason
        == f"outranked by {result.match.route.name}: host {first} is tried before {second}"
    )


def test_regex_routes_are_tried_before_prefixes():
    routes = [route(1, "/api/v1"), route(2, r"~^/api/v\d+")]
    got = why(routes, path="/api/v1/users")
    assert got == {"winner": "r2", "r1": "outranked by r2: regex routes are tried before prefixes"}


def test_longer_prefix_wins():
    got = why([route(1, "/api", priority=5), route(2, "/api/v1")], path="/api/v1/x")
    assert got == {"winner": "r2", "r1": "outranked by r2: longer path prefix (2 segments vs 1)"}


def test_higher_priority_wins():
    got = why([route(1, "/api"), route(2, "/api", priority=10)])
    assert got == {"winner": "r2", "r1": "outranked by r2: higher priority (10 vs 0)"}


def test_more_conditions_win():
    routes = [route(1, "/api"), route(2, "/api", methods=["GET"], headers={"x-v": ["1"]})]
    got = why(routes, HTTP_X_V="1")
    assert got == {"winner": "r2", "r1": "outranked by r2: more conditions (2 vs 0)"}


def test_older_route_wins_a_tie():
    got = why([route(7, "/api"), route(3, "/api")])
    assert got == {"winner": "r3", "r7": "outranked by r3: older route (id 3 vs 7)"}


def test_a_route_with_several_paths_is_compared_by_its_best_entry():
    routes = [route(1, "/other", "/api/x"), route(2, "/api", priority=9)]
    got = why(routes, path="/api/x/y")
    assert got == {"winner": "r1", "r2": "outranked by r1: longer path prefix (2 segments vs 1)"}


# --- Conditions that do not fit ------------------------------------------------------------------


def test_path_reasons_prefix_on_segment_boundary_and_regex():
    routes = [route(1, "/api"), route(2, "/v1", "/v2"), route(3, r"~^/v\d+")]
    got = why(routes, path="/apix")
    assert got == {
        "winner": None,
        "r1": "path /apix does not start with /api on a segment boundary",
        "r2": "path /apix does not start with /v1 or /v2 on a segment boundary",
        "r3": r"regex ~^/v\d+ does not match",
    }


def test_method_and_header_reasons_reuse_the_matchers_check():
    routes = [
        route(1, "/api", methods=["GET"]),
        route(2, "/api", headers={"x-version": ["2", "3"]}),
        route(3, "/other", hosts=["x.org"], methods=["GET"]),
    ]
    got = why(routes, method="POST", HTTP_X_VERSION="1")
    assert got["r1"] == "method POST not in ['GET']"
    assert got["r2"] == "header x-version is '1', needs one of ['2', '3']"
    # Every condition that fails is listed, in the order the matcher applies them.
    assert got["r3"] == (
        "host api.example.com does not match ['x.org']; "
        "path /api/x does not start with /other on a segment boundary; "
        "method POST not in ['GET']"
    )
    result = explain(RouteTable(routes), "POST", "api.example.com", "/api/x", {})
    kinds = [[r.kind for r in lost.reasons] for lost in result.losers]
    assert kinds == [["method"], ["header"], ["host", "path", "method"]]


def test_precedence_key_is_the_routing_key():
    r = route(4, "/a", hosts=["*.b.example.com"], methods=["GET"], priority=3)
    for host, rank in ((None, (2,)), ("*.b.example.com", (1, -2)), ("a.example.com", (0,))):
        for path in ("/", "/a/b", r"~^/x"):
            assert precedence_key(r, host, path) == _make_entry(r, path, rank).key


def test_explanations_agree_with_the_matcher_on_random_tables():
    """Whatever the table, every route that fits is explained as outranked by the real winner."""
    rng = random.Random(1234)
    hosts = [None, "api.example.com", "api.example.com:8080", "*.example.com", "*.a.example.com"]
    hosts += ["*.example.com:8080"]
    paths = ["/", "/api", "/api/v1", "/api/v1/users", r"~^/api/v\d+", r"~^/ap"]
    for _ in range(150):
        routes = []
        for i in range(1, rng.randint(2, 7)):
            host = rng.choice(hosts)
            routes.append(
                route(
                    rng.randint(1, 1000) * 10 + i,
                    *rng.sample(paths, rng.randint(1, 2)),
                    hosts=[host] if host else [],
                    methods=rng.choice([[], ["GET"], ["POST"]]),
                    priority=rng.choice([0, 0, 5]),
                )
            )
        table = RouteTable(routes)
        for host in ("api.example.com", "api.example.com:8080", "b.a.example.com", "o.org"):
            for path in ("/api/v1/users/1", "/api", "/apix", "/x"):
                result = explain(table, "GET", host, path, {})
                match = table.match("GET", host, path, {})
                assert result.match == match
                for lost in result.losers:
                    assert "bug" not in lost.reason, (routes, host, path, lost)
                    if lost.reasons[0].kind == "outranked":
                        assert lost.reason.startswith(f"outranked by {match.route.name}: ")
                if match:
                    assert result.winner.route == match.route
                    assert isinstance(result.winner, Precedence)


# --- What goes upstream --------------------------------------------------------------------------


@pytest.mark.django_db
def test_upstream_url_strips_the_prefix_under_the_service_path(echo):
    make_route(make_service(echo, path="/v1"), paths=["/api"])
    result = explain_request("GET", "http://api.example.com/api/items/7?x=1")
    assert result.upstream.url == f"http://127.0.0.1:{echo.port}/v1/items/7?x=1"
    assert result.upstream.target == "/v1/items/7?x=1"
    assert result.refusal is None


@pytest.mark.django_db
def test_upstream_url_keeps_the_prefix_without_strip_path(echo):
    make_route(make_service(echo, path="/v1"), paths=["/api"], strip_path=False)
    result = explain_request("GET", "http://api.example.com/api/items")
    assert result.upstream.url == f"http://127.0.0.1:{echo.port}/v1/api/items"
    headers = dict(result.upstream.headers)
    assert "x-forwarded-prefix" not in headers


@pytest.mark.django_db
def test_exact_prefix_and_root_route(echo):
    service = make_service(echo)
    make_route(service, paths=["/api"])
    make_route(service, name="root", paths=["/"])
    assert explain_request("GET", "http://h.example.com/api").upstream.target == "/"
    assert explain_request("GET", "http://h.example.com/a/b").upstream.target == "/a/b"


@pytest.mark.django_db
def test_query_is_forwarded_byte_for_byte_and_the_path_canonical(echo):
    make_route(make_service(echo), paths=["/api"])
    query = "b=%2f&a=1&a=2&c=%E2%82%AC&d=a+b&e&&f=%zz"
    result = explain_request("GET", f"http://h.example.com/api/./x//caf%C3%A9/../y%20z?{query}")
    assert result.path == "/api/x/y z"
    assert result.query == query
    assert result.upstream.target == f"/x/y%20z?{query}"


@pytest.mark.django_db
def test_headers_shown_are_the_forwarders(echo):
    make_route(make_service(echo), paths=["/api"])
    result = explain_request(
        "POST",
        "https://api.example.com:8443/api/x",
        [
            "X-Forwarded-For: 198.51.100.7",
            "Via: 1.0 edge",
            "Connection: close, X-Hop",
            "X-Hop: 1",
            "X-Consumer-ID: spoofed",
            "Content-Type: application/json",
            "Content-Length: 12",
            "Accept: a",
            "Accept: b",
        ],
        remote_addr="203.0.113.9",
    )
    headers = result.upstream.headers
    got = dict(headers)
    assert headers[0] == ("Host", f"127.0.0.1:{echo.port}")
    assert got["X-Forwarded-For"] == "198.51.100.7, 203.0.113.9"
    assert got["x-forwarded-proto"] == "https"
    assert got["x-forwarded-host"] == "api.example.com:8443"
    assert got["x-forwarded-port"] == "8443"
    assert got["x-forwarded-prefix"] == "/api"
    assert got["Via"] == "1.0 edge, 1.1 django-gateway"
    assert got["X-Real-IP"] == "203.0.113.9"
    assert got["accept"] == "a,b"
    assert got["content-type"] == "application/json"
    assert headers[-1] == ("Content-Length", "12")
    assert len(got["X-Request-ID"]) == 32
    for absent in ("connection", "x-hop", "x-consumer-id"):
        assert absent not in {name.lower() for name, _ in headers}


@pytest.mark.django_db
def test_preserve_host_and_client_request_id(echo):
    make_route(make_service(echo), paths=["/api"], preserve_host=True)
    result = explain_request("GET", "http://api.example.com/api", ["X-Request-ID: abc-123"])
    assert result.upstream.headers[0] == ("Host", "api.example.com")
    assert ("X-Request-ID", "abc-123") in result.upstream.headers


@pytest.mark.django_db
def test_explained_request_is_what_the_gateway_sends(echo):
    """The preview and the real middleware + forwarder agree on the request line and headers."""
    make_route(make_service(echo, path="/v1"), paths=["/api"])
    args = ("PUT", "https://api.example.com:8443/api/a/../b?q=%20&r", ["X-Test: yes", "Via: 1.0 x"])
    kwargs = {"remote_addr": "10.1.2.3"}
    result = explain_request(*args, **kwargs)
    environ = request_environ(*args, **kwargs)
    environ["HTTP_X_REQUEST_ID"] = dict(result.upstream.headers)["X-Request-ID"]
    response = ClientHandler()(environ)  # the WSGI handler the test client uses, without its extras
    assert response.status_code == 200
    (seen,) = echo.requests
    assert (seen.method, seen.target) == ("PUT", result.upstream.target)
    assert seen.headers == list(result.upstream.headers)


@pytest.mark.django_db
def test_service_without_targets_is_a_503():
    make_route(make_service(), paths=["/api"])
    result = explain_request("GET", "http://h.example.com/api/x")
    assert result.upstream.url is None
    assert result.upstream.target == "/x"
    assert result.refusal == "503 Service Unavailable: Service 'svc' has no enabled targets."
    assert all(name != "Host" for name, _ in result.upstream.headers)


@pytest.mark.django_db
def test_framing_and_host_refusals(echo):
    make_route(make_service(echo), paths=["/api"], max_body_size=10)
    result = explain_request("POST", "http://h.example.com/api", ["Content-Length: 11"])
    assert result.refusal.startswith("413 ")
    result = explain_request("POST", "http://h.example.com/api", ["Transfer-Encoding: gzip"])
    assert result.refusal.startswith("501 ")
    with override_settings(ALLOWED_HOSTS=["good.example.com"]):
        result = explain_request("GET", "http://h.example.com/api")
    assert result.refusal == "400 Bad Request: The Host header is not in ALLOWED_HOSTS."


# --- Input -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_bad_paths_are_refused_with_the_middlewares_reason(echo):
    make_route(make_service(echo), paths=["/a"])
    with pytest.raises(InvalidPath) as caught:
        explain_request("GET", "http://h.example.com/a%2Fb")
    assert "Encoded slashes" in caught.value.detail
    assert (caught.value.decoded_path, caught.value.decoded_route) == ("/a/b", "route")
    with pytest.raises(InvalidPath) as caught:
        explain_request("GET", "http://h.example.com/x%2Fb")
    assert caught.value.decoded_route is None
    # The tester asks the table what the middleware asks it: %2F stays opaque, '..' cannot climb.
    with pytest.raises(InvalidPath) as caught:
        explain_request("GET", "http://h.example.com/a%2F..%2Fadmin")
    assert (caught.value.decoded_path, caught.value.decoded_route) == ("/a/_../admin", "route")


@pytest.mark.django_db
def test_the_tester_normalises_the_host_like_the_gateway(echo):
    service = make_service(echo)
    make_route(service, name="open", paths=["/s"])
    make_route(service, name="secure", hosts=["gw.test"], paths=["/s"], authentication="key")
    assert explain_request("GET", "http://gw.test./s").match.route.name == "secure"
    assert explain_request("GET", "/s", ["Host: GW.Test.:8080"]).match.route.name == "secure"
    result = explain_request("GET", "/s", ["Host: gw..test"])
    assert result.refusal == "400 Bad Request: The Host header is not a valid host name."


@pytest.mark.parametrize(
    ("method", "url", "headers"),
    [
        ("GET", "ftp://h/x", []),
        ("GET", "x/y", []),
        ("GET", "/x", []),  # no host at all
        ("G ET", "http://h/x", []),
        ("GET", "http://h/x", ["no colon"]),
        ("GET", "http://h/x", ["Bad Name: v"]),
        ("GET", "http://h/x", ["X_Under: v"]),
        ("GET", "http://h/x", ["X-A: a\x00b"]),
        ("GET", "http://u:p@h/x", []),
        ("GET", "http://h/x", ["Host: a", "Host: b"]),
    ],
)
def test_invalid_input(method, url, headers):
    with pytest.raises(InvalidRequest):
        request_environ(method, url, headers)


def test_environ_like_gunicorns():
    env = request_environ("get", "/a%20b?x=%2f", ["Host: api.example.com:81", "X-A: 1"])
    assert env["REQUEST_METHOD"] == "GET"
    assert (env["RAW_URI"], env["PATH_INFO"], env["QUERY_STRING"]) == (
        "/a%20b?x=%2f",
        "/a b",
        "x=%2f",
    )
    assert (env["SERVER_NAME"], env["SERVER_PORT"], env["HTTP_HOST"]) == (
        "api.example.com",
        "81",
        "api.example.com:81",
    )
    assert env["HTTP_X_A"] == "1"
    assert request_environ("GET", "https://h.example.com/")["SERVER_PORT"] == "443"


@pytest.mark.django_db
def test_route_rows_follow_match_order(echo):
    service = make_service(echo, path="/v1")
    make_route(service, name="short", paths=["/api"])
    make_route(service, name="long", paths=["/api/v2"], methods=["GET", "POST"])
    make_route(service, name="host", paths=["/"], hosts=["api.example.com"], priority=3)
    rows = route_rows()
    assert [(r.host, r.path, r.route) for r in rows] == [
        ("api.example.com", "/", "host"),
        ("*", "/api/v2", "long"),
        ("*", "/api", "short"),
    ]
    assert rows[1].methods == ("GET", "POST")
    assert rows[0].targets == (f"http://127.0.0.1:{echo.port}/v1",)
    json.dumps([r.as_dict() for r in rows])
    assert route_rows(build_snapshot().routes) == rows
