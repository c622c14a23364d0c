"""``gateway_routes`` and ``gateway_test_route`` as a user runs them."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_gateway.runtime import runtime
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def run_failing(*args: str) -> tuple[int, str, str]:
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command(*args, stdout=out)
    return caught.value.returncode, str(caught.value), out.getvalue()


@pytest.fixture
def routes(echo):
    orders = make_service(echo, name="orders", path="/v1")
    make_route(orders, name="orders", paths=["/api/orders"], methods=["GET", "POST"])
    make_route(orders, name="api", paths=["/api"])
    make_route(orders, name="v2", paths=[r"~^/api/v\d+"], hosts=["api.example.com"], priority=5)
    make_route(make_service(name="empty"), name="beta", paths=["/api"], hosts=["*.example.com"])
    return echo


# --- gateway_routes ----------------------------------------------------------------------------


def test_gateway_routes_prints_the_table_in_match_order(routes):
    lines = run("gateway_routes").splitlines()
    assert lines[0].split() == [
        "HOST",
        "PATH",
        "METHODS",
        "PRIORITY",
        "ROUTE",
        "SERVICE",
        "TARGETS",
    ]
    rows = [line.split() for line in lines[1:]]
    target = f"http://127.0.0.1:{routes.port}/v1"
    assert rows == [
        ["api.example.com", r"~^/api/v\d+", "*", "5", "v2", "orders", target],
        ["*.example.com", "/api", "*", "0", "beta", "empty", "(no", "targets)"],
        ["*", "/api/orders", "GET,POST", "0", "orders", "orders", target],
        ["*", "/api", "*", "0", "api", "orders", target],
    ]


def test_gateway_routes_json(routes):
    data = json.loads(run("gateway_routes", "--json"))
    assert [row["route"] for row in data] == ["v2", "beta", "orders", "api"]
    assert data[2] == {
        "host": "*",
        "path": "/api/orders",
        "methods": ["GET", "POST"],
        "headers": {},
        "priority": 0,
        "route": "orders",
        "service": "orders",
        "targets": [f"http://127.0.0.1:{routes.port}/v1"],
        "strip_path": True,
        "preserve_host": False,
    }


def test_gateway_routes_reads_the_database_not_the_process_snapshot(routes):
    from django_gateway.models import Route

    runtime.snapshots.get()  # cache a snapshot in this process...
    Route.objects.filter(name="api").update(enabled=False)  # ...then change the rows behind it
    assert "api" not in [row["route"] for row in json.loads(run("gateway_routes", "--json"))]


def test_gateway_routes_empty():
    assert run("gateway_routes") == "No enabled routes: Django serves every request.\n"
    assert json.loads(run("gateway_routes", "--json")) == []


# --- gateway_test_route ------------------------------------------------------------------------


def test_test_route_names_the_winner_the_losers_and_the_upstream(routes):
    out = run(
        "gateway_test_route", "get", "https://shop.example.com/api/orders/7?page=2&sort=-id",
        "-H", "X-Forwarded-For: 198.51.100.7", "--remote-addr", "203.0.113.9",
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "GET https://shop.example.com/api/orders/7?page=2&sort=-id"
    assert lines[1] == "route: beta (service empty)"
    assert lines[2] == "  matched *.example.com, path /api; remainder /orders/7"
    assert "other routes:" in lines
    assert "  orders  outranked by beta: wildcard host beats no host (*.example.com vs *)" in lines
    assert (
        "  v2      host shop.example.com does not match ['api.example.com']; "
        r"regex ~^/api/v\d+ does not match"
    ) in lines
    assert (
        "the gateway would answer 503 Service Unavailable: Service 'empty' has no enabled targets."
        in lines
    )
    assert "  GET (no target) /orders/7?page=2&sort=-id" in lines
    assert "  X-Forwarded-For: 198.51.100.7, 203.0.113.9" in lines
    assert "  x-forwarded-proto: https" in lines
    assert "  x-forwarded-prefix: /api" in lines
    assert "  Via: 1.1 django-gateway" in lines


def test_test_route_upstream_url_and_host(routes):
    out = run("gateway_test_route", "POST", "http://gw.local:8000/api/orders?x=%2F", "-H", "X-A: 1")
    lines = out.splitlines()
    assert lines[1] == "route: orders (service orders)"
    assert "  api   outranked by orders: longer path prefix (2 segments vs 1)" in lines
    assert "  beta  host gw.local:8000 does not match ['*.example.com']" in lines
    assert f"  POST http://127.0.0.1:{routes.port}/v1?x=%2F" in lines
    assert f"  Host: 127.0.0.1:{routes.port}" in lines
    assert "  x-a: 1" in lines
    assert "  x-forwarded-port: 8000" in lines


def test_test_route_path_url_with_host_header(routes):
    out = run("gateway_test_route", "GET", "/api/v3/x", "-H", "Host: api.example.com")
    assert out.splitlines()[1] == "route: v2 (service orders)"
    assert "  beta    outranked by v2: exact host beats wildcard host" in out


def test_test_route_method_reason(routes):
    out = run("gateway_test_route", "DELETE", "http://gw.local/api/orders/1")
    assert "  orders  method DELETE not in ['GET', 'POST']" in out.splitlines()


def test_test_route_no_match_exits_1(routes):
    code, message, out = run_failing("gateway_test_route", "GET", "http://gw.local/health")
    assert code == 1
    assert message == "no route: Django would serve this request"
    assert "no route: Django would serve this request" in out.splitlines()
    assert "  api     path /health does not start with /api on a segment boundary" in out


def test_test_route_bad_path_exits_2(routes):
    code, message, out = run_failing("gateway_test_route", "GET", "http://gw.local/api%2Fx")
    assert code == 2
    assert message.startswith("invalid path: Encoded slashes")
    assert "route 'api' matches the decoded path, so the gateway answers 400" in message
    assert out == ""
    code, message, _ = run_failing("gateway_test_route", "GET", "http://gw.local/a%2Fb")
    assert (code, message.endswith("so the gateway leaves it to Django)")) == (2, True)


@pytest.mark.parametrize(
    "args",
    [
        ("GET", "api/x"),
        ("GET", "/api/x"),
        ("GET", "http://gw.local/api", "-H", "nonsense"),
        ("GET", "http://gw.local/api", "-H", "Host:"),
        ("G/T", "http://gw.local/api"),
    ],
)
def test_test_route_invalid_input_exits_2(routes, args):
    code, _, _ = run_failing("gateway_test_route", *args)
    assert code == 2


def test_test_route_json(routes):
    data = json.loads(
        run("gateway_test_route", "GET", "http://api.example.com/api/v1/x?a=1", "--json")
    )
    assert data["matched"] is True
    assert data["request"] == {
        "method": "GET",
        "scheme": "http",
        "host": "api.example.com",
        "path": "/api/v1/x",
        "query": "a=1",
    }
    assert data["winner"] == {
        "route": "v2",
        "service": "orders",
        "host": "api.example.com",
        "path": r"~^/api/v\d+",
        "matched": "/api/v1",
        "remainder": "/x",
    }
    reasons = {lost["route"]: lost["reasons"] for lost in data["losers"]}
    assert reasons["orders"] == [
        {
            "kind": "path",
            "detail": "path /api/v1/x does not start with /api/orders on a segment boundary",
        }
    ]
    assert reasons["api"] == [
        {
            "kind": "outranked",
            "detail": "outranked by v2: exact host beats no host (api.example.com vs *)",
        }
    ]
    assert reasons["beta"][0]["detail"] == (
        "outranked by v2: exact host beats wildcard host (api.example.com vs *.example.com)"
    )
    upstream = data["upstream"]
    assert upstream["url"] == f"http://127.0.0.1:{routes.port}/v1/x?a=1"
    assert upstream["headers"][0] == ["Host", f"127.0.0.1:{routes.port}"]
    assert data["refusal"] is None


def test_test_route_json_without_match(routes):
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("gateway_test_route", "GET", "http://gw.local/x", "--json", stdout=out)
    assert caught.value.returncode == 1
    data = json.loads(out.getvalue())
    assert data["matched"] is False
    assert data["winner"] is None and data["upstream"] is None
    assert data["message"] == "no route: Django would serve this request"


@pytest.mark.django_db
def test_route_tester_says_what_a_route_asks_of_a_request(echo):
    from django_gateway.models import Consumer

    anonymous = Consumer.objects.create(username="guest")
    make_route(
        make_service(echo),
        paths=["/api"],
        authentication="key",
        anonymous_consumer=anonymous,
        allowed_groups=["staff"],
        denied_ips=["192.0.2.0/24"],
    )
    make_route(make_service(echo, name="open"), name="open", paths=["/open"])
    out = StringIO()
    call_command("gateway_test_route", "GET", "http://gw.test/api/x", stdout=out)
    text = out.getvalue()
    assert "access: client address not in 192.0.2.0/24 (else 403)" in text
    assert "access: an API key, else it proceeds as anonymous consumer 'guest'" in text
    assert "removed before proxying" in text
    assert "access: consumer in one of groups ['staff']" in text
    out = StringIO()
    call_command("gateway_test_route", "GET", "http://gw.test/open/x", "--json", stdout=out)
    assert json.loads(out.getvalue())["access"] == ["none: the route is open"]
