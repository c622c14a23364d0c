"""Validation in clean(): what the admin, the API and config files all rely on."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from django_gateway.models import Route, Service, Target

pytestmark = pytest.mark.django_db


@pytest.fixture
def service() -> Service:
    return Service.objects.create(name="svc")


def clean_route(service: Service, **fields) -> Route:
    route = Route(service=service, name="r", **fields)
    route.full_clean()
    return route


@pytest.mark.parametrize(
    ("paths", "stored"),
    [
        (["/api/"], ["/api"]),
        (["/a//b/./c"], ["/a/b/c"]),
        (["/", "/x", "/x"], ["/", "/x"]),
        ([r"~/v\d+/items"], [r"~/v\d+/items"]),
    ],
)
def test_paths_are_stored_canonical(service, paths, stored):
    assert clean_route(service, paths=paths).paths == stored


@pytest.mark.parametrize(
    "paths",
    [["api"], ["/a?b"], ["/a%2Fb"], ["/a\\b"], ["~(unclosed"], ["/a\r\nX: y"], [""], "/not-a-list"],
)
def test_bad_paths_are_refused(service, paths):
    with pytest.raises(ValidationError) as info:
        clean_route(service, paths=paths)
    assert "paths" in info.value.message_dict


@pytest.mark.parametrize(
    ("hosts", "stored"),
    [
        (["API.Example.com"], ["api.example.com"]),
        (["*.example.com"], ["*.example.com"]),
        (["api.example.com:8443"], ["api.example.com:8443"]),
    ],
)
def test_hosts(service, hosts, stored):
    assert clean_route(service, hosts=hosts).hosts == stored


@pytest.mark.parametrize(
    "hosts", [["*.com"], ["exa mple.com"], ["a.example.com:99999"], ["-a.example.com"], ["*"]]
)
def test_bad_hosts(service, hosts):
    with pytest.raises(ValidationError) as info:
        clean_route(service, hosts=hosts)
    assert "hosts" in info.value.message_dict


def test_methods_are_upper_cased_and_checked(service):
    assert clean_route(service, paths=["/"], methods=["get", "POST"]).methods == ["GET", "POST"]
    with pytest.raises(ValidationError):
        clean_route(service, paths=["/"], methods=["FETCH"])


def test_header_conditions_refuse_cr_lf(service):
    route = clean_route(service, paths=["/"], headers={"X-Version": "2"})
    assert route.headers == {"x-version": ["2"]}
    for bad in ({"X-Version": ["2\r\nX-Evil: 1"]}, {"Bad Name": ["1"]}, {"X-A\n": ["1"]}):
        with pytest.raises(ValidationError) as info:
            clean_route(service, paths=["/"], headers=bad)
        assert "headers" in info.value.message_dict


def test_a_route_needs_something_to_match_on(service):
    with pytest.raises(ValidationError) as info:
        clean_route(service)
    assert "paths" in info.value.message_dict


def test_service_path():
    service = Service(name="s", path="/v1/")
    service.full_clean()
    assert service.path == "/v1"
    for bad in ("v1", "/v1?x", "/a b", "/a\r\n"):
        with pytest.raises(ValidationError):
            Service(name="s", path=bad).full_clean()


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "169.254.10.1",
        "fe80::1",
        "[fe80::1]",
        "fd00:ec2::254",
        "metadata.google.internal",
        "::ffff:169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
    ],
)
def test_link_local_and_metadata_targets_are_refused(service, host):
    with pytest.raises(ValidationError) as info:
        Target(service=service, host=host, port=80).full_clean()
    assert "host" in info.value.message_dict


def test_link_local_targets_allowed_by_setting(service, settings):
    settings.GATEWAY = {"ALLOW_LINK_LOCAL_UPSTREAMS": True}
    Target(service=service, host="169.254.169.254", port=80).full_clean()


@pytest.mark.parametrize("host", ["10.0.0.5", "api.internal", "::1", "[2001:db8::1]"])
def test_ordinary_targets(service, host):
    target = Target(service=service, host=host, port=8080)
    target.full_clean()
    assert "[" not in target.host


def test_target_port_and_wildcard(service):
    for bad in (
        {"host": "a.example.com", "port": 0},
        {"host": "a.example.com", "port": 70000},
        {"host": "*.example.com", "port": 80},
        {"host": "bad host", "port": 80},
    ):
        with pytest.raises(ValidationError):
            Target(service=service, **bad).full_clean()


def test_forbidden_resolved_address_is_refused_at_connect_time(settings):
    from django_gateway.exceptions import UpstreamConnectError
    from django_gateway.proxy.pool import Endpoint, open_connection

    with pytest.raises(UpstreamConnectError, match="forbidden"):
        open_connection(Endpoint("http", "169.254.169.254", 80), 0.2)
