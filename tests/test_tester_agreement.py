"""The route tester is the gateway: the same requests, through both, agree on everything.

Each request is built once (``operations.request_environ``, the tester's own WSGI environ) and
given to both: ``explain_request`` and the real WSGI handler with the gateway's middleware, the
forwarder and real loopback upstreams (one of them found through the Consul double). For every
routing and refusal case of the routing docs they must agree on the winning route, on whether and
how the gateway answers itself, on the exact request the upstream receives, and on the rate
limits that count the request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test.client import ClientHandler

from django_gateway.models import RateLimit
from django_gateway.operations import InvalidPath, explain_request, request_environ
from django_gateway.runtime import runtime
from django_gateway.testing.consul import ConsulDouble
from django_gateway.testing.upstreams import EchoUpstream
from tests.conftest import make_route, make_service

REMOTE = "198.51.100.7"

CASES = [
    ("GET", "http://api.example.com/api/users", []),
    ("GET", "http://api.example.com/api/ordersx", []),
    ("GET", "http://api.example.com/API/orders", []),
    ("GET", "http://api.example.com/api/orders/42", []),
    ("GET", "http://api.example.com/api/orders/42", ["X-Api-Version: 2"]),
    ("GET", "http://api.example.com/api/orders/42", ["X-Api-Version: 3"]),
    ("POST", "http://api.example.com/api/orders", ["Content-Length: 0"]),
    ("GET", "http://api.example.com/api/orders/42/report", []),
    ("GET", "http://api.example.com/api/orders/42/report/x", []),
    ("GET", "http://acme.partners.example.com/api/orders/42", []),
    ("GET", "http://beta.partners.example.com/api/orders/42", []),
    ("GET", "http://eu.beta.partners.example.com/api/x", []),
    ("GET", "http://beta.partners.example.com/healthz", []),
    ("GET", "http://partners.example.com/api/x", []),
    ("GET", "/api/x", ["Host: ACME.Partners.Example.COM."]),
    ("GET", "/api/x", ["Host: acme..partners.example.com"]),
    ("GET", "http://api.example.com/api/a/../b?q=%20&r", ["Via: 1.0 edge"]),
    ("GET", "http://api.example.com/api/a%2Fb", []),
    ("GET", "http://api.example.com/api/..%2Fadmin", []),
    ("GET", "http://api.example.com/elsewhere%2Fb", []),
    ("GET", "/kept/x?y=1", ["Host: Shop.Example.COM."]),
    ("GET", "http://api.example.com/limited/x", []),
    ("GET", "http://api.example.com/users/7", []),
    ("GET", "http://api.example.com/empty/x", []),
    ("POST", "http://api.example.com/small", ["Content-Length: 20"]),
    ("POST", "http://api.example.com/small", ["Transfer-Encoding: gzip, chunked"]),
]


@pytest.fixture
def upstreams() -> Iterator[tuple[EchoUpstream, EchoUpstream]]:
    with EchoUpstream() as static, EchoUpstream() as discovered:
        yield static, discovered


@pytest.fixture
def consul(settings: Any, upstreams: tuple[EchoUpstream, EchoUpstream]) -> Iterator[ConsulDouble]:
    with ConsulDouble() as double:
        discovered = upstreams[1]
        double.catalog.register("users", "u1", address=discovered.host, port=discovered.port)
        settings.GATEWAY = {**django_settings.GATEWAY, "CONSUL_ADDRESS": double.address}
        yield double
        runtime.reset()


@pytest.fixture
def routes(db: Any, consul: ConsulDouble, upstreams: tuple[EchoUpstream, EchoUpstream]) -> None:
    """The routing docs' worked example, plus one route per refusal and forwarding rule."""
    static, _ = upstreams
    svc = make_service(static)
    make_route(svc, "monolith", paths=["/api"])
    make_route(svc, "orders", paths=["/api/orders"], methods=["GET", "POST"])
    make_route(svc, "orders-v2", paths=["/api/orders"], headers={"X-Api-Version": ["2"]})
    make_route(svc, "reports", paths=[r"~^/api/orders/\d+/report$"])
    make_route(svc, "partners", paths=["/api"], hosts=["*.partners.example.com"])
    make_route(svc, "acme", paths=[], hosts=["acme.partners.example.com"])
    kept = make_service(static, name="kept", path="/v1")
    make_route(kept, "kept", paths=["/kept"], preserve_host=True, strip_path=False)
    limited = make_route(svc, "limited", paths=["/limited"])
    for period, limit in (("minute", 100), ("hour", 1000)):
        row = RateLimit(route=limited, limit=limit, period=period, limit_by="ip")
        row.full_clean()
        row.save()
    make_route(make_service(name="users", discovery="consul"), "users", paths=["/users"])
    make_route(make_service(name="empty"), "empty", paths=["/empty"])
    make_route(svc, "small", paths=["/small"], max_body_size=10)
    runtime.snapshots.invalidate()


def through_the_tester(method: str, url: str, headers: list[str]) -> dict[str, Any]:
    try:
        result = explain_request(method, url, headers, remote_addr=REMOTE)
    except InvalidPath as refused:
        return {"route": None, "refusal": 400 if refused.decoded_route else None}
    up = result.upstream
    return {
        "route": result.match.route.name if result.match else None,
        "refusal": int(result.refusal.split()[0]) if result.refusal else None,
        "upstream": up and (up.target, list(up.headers), up.url),
        "limits": [rule for rule in result.as_dict()["access"] if rule.startswith("at most")],
    }


def through_the_gateway(
    method: str, url: str, headers: list[str], caplog: pytest.LogCaptureFixture, upstreams: Any
) -> dict[str, Any]:
    before = [len(u.requests) for u in upstreams]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="django_gateway.access"):
        response = ClientHandler()(request_environ(method, url, headers, remote_addr=REMOTE))
    logged = [r for r in caplog.records if r.name == "django_gateway.access"]
    ours = bool(logged)  # the gateway logs every request it answers, refusals included
    got = {"route": None, "refusal": None}
    if ours and logged[0].route != "-":
        got["route"] = logged[0].route
    sent = [
        (u, u.requests[-1]) for u, n in zip(upstreams, before, strict=True) if len(u.requests) > n
    ]
    if ours and not sent:
        assert response["Content-Type"] == "application/problem+json"
        assert json.loads(response.content)["status"] == response.status_code
        got["refusal"] = response.status_code
    if sent:
        upstream, seen = sent[0]
        got["upstream"] = (seen.target, seen.headers, f"{upstream.url}{seen.target}")
        got["limits"] = sorted(
            f"{name}: {value}" for name, value in response.items() if "-Limit-" in name
        )
    return got


@pytest.mark.parametrize(("method", "url", "headers"), CASES)
def test_the_tester_and_the_gateway_agree(
    routes: None,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    caplog: pytest.LogCaptureFixture,
    method: str,
    url: str,
    headers: list[str],
) -> None:
    headers = [*headers, "X-Request-ID: agree-1"]  # the one value the gateway would generate
    tester = through_the_tester(method, url, headers)
    gateway = through_the_gateway(method, url, headers, caplog, upstreams)
    assert tester["refusal"] == gateway["refusal"]
    if gateway["refusal"] is None or gateway["route"] is not None:  # a refused Host logs no route
        assert tester["route"] == gateway["route"]
    if "upstream" in gateway:
        assert tester["upstream"] == gateway["upstream"]
        limits = tester["limits"]
        assert len(limits) == len(gateway["limits"])  # one X-RateLimit-Limit-<Period> each
        for line in gateway["limits"]:
            period = line.split(":")[0].rsplit("-", 1)[1].lower()
            assert any(f"{line.split(': ')[1]} per {period} " in rule for rule in limits)
    else:
        assert tester.get("upstream") is None or tester["refusal"] is not None
