"""The route table: precedence, segment boundaries, hosts, conditions, and cost that does not grow."""

from __future__ import annotations

import pytest

from django_gateway.config import CompiledRoute
from django_gateway.routing import RouteTable
from tests.conftest import compiled_route

route = compiled_route


def winner(table: RouteTable, path: str, host: str = "example.com", method: str = "GET", **env):
    found = table.match(method, host, path, env)
    return found.route.id if found else None


def test_prefixes_match_on_segment_boundaries():
    table = RouteTable([route(1, "/api")])
    assert winner(table, "/api") == 1
    assert winner(table, "/api/") == 1
    assert winner(table, "/api/x/y") == 1
    assert winner(table, "/apix") is None
    assert winner(table, "/") is None


def test_matching_is_case_sensitive():
    assert winner(RouteTable([route(1, "/api")]), "/API") is None


def test_longest_prefix_wins_regardless_of_order():
    table = RouteTable([route(1, "/api"), route(2, "/api/v2/users"), route(3, "/api/v2")])
    assert winner(table, "/api/v2/users/7") == 2
    assert winner(table, "/api/v2/orders") == 3
    assert winner(table, "/api/v1") == 1


def test_remainder_and_matched_prefix():
    table = RouteTable([route(1, "/api"), route(2, "/")])
    found = table.match("GET", "h", "/api/x", {})
    assert (found.matched, found.remainder) == ("/api", "/x")
    found = table.match("GET", "h", "/api", {})
    assert (found.matched, found.remainder) == ("/api", "")
    found = table.match("GET", "h", "/other", {})
    assert (found.route.id, found.matched, found.remainder) == (2, "", "/other")


def test_route_without_paths_matches_every_path():
    table = RouteTable([route(1, hosts=["api.example.com"])])
    assert winner(table, "/anything", host="api.example.com") == 1


def test_exact_host_beats_wildcard_beats_any_host_even_with_shorter_path():
    table = RouteTable(
        [
            route(1, "/api/v1/deep"),
            route(2, "/api", hosts=["*.example.com"]),
            route(3, "/", hosts=["api.example.com"]),
        ]
    )
    assert winner(table, "/api/v1/deep", host="api.example.com") == 3
    assert winner(table, "/api/v1/deep", host="www.example.com") == 2
    assert winner(table, "/api/v1/deep", host="other.org") == 1


def test_host_matching_ignores_case_and_honours_ports():
    table = RouteTable(
        [route(1, "/", hosts=["api.example.com"]), route(2, "/", hosts=["api.example.com:8443"])]
    )
    assert winner(table, "/", host="API.Example.com") == 1
    assert winner(table, "/", host="api.example.com:8080") == 1
    assert winner(table, "/", host="api.example.com:8443") == 2


def test_longer_wildcard_suffix_wins_and_wildcard_needs_a_label():
    table = RouteTable(
        [route(1, "/", hosts=["*.example.com"]), route(2, "/", hosts=["*.eu.example.com"])]
    )
    assert winner(table, "/", host="a.eu.example.com") == 2
    assert winner(table, "/", host="a.us.example.com") == 1
    assert winner(table, "/", host="example.com") is None


def test_regex_routes_are_tried_before_prefixes_by_priority():
    table = RouteTable(
        [
            route(1, "/users/42"),
            route(2, r"~/users/\d+$", priority=1),
            route(3, r"~/users/\d", priority=5),
        ]
    )
    assert winner(table, "/users/4") == 3
    assert winner(table, "/users/42") == 2  # route 3 would end mid-segment
    found = table.match("GET", "h", "/users/4/posts", {})
    assert (found.route.id, found.matched, found.remainder) == (3, "/users/4", "/posts")
    found = table.match("GET", "h", "/users/42/posts", {})
    assert (found.route.id, found.matched, found.remainder) == (1, "/users/42", "/posts")


def test_regex_matches_end_on_segment_boundaries():
    table = RouteTable([route(1, r"~/users/\d+"), route(2, r"~/v\d+/")])
    assert winner(table, "/users/42abc/x") is None
    assert table.match("GET", "h", "/users/42/x", {}).remainder == "/x"
    found = table.match("GET", "h", "/v2/items", {})
    assert (found.route.id, found.matched, found.remainder) == (2, "/v2/", "/items")


def test_priority_then_conditions_then_age():
    table = RouteTable(
        [
            route(5, "/api"),
            route(4, "/api", methods=["GET"]),
            route(9, "/api", priority=1, methods=["POST"]),
        ]
    )
    assert winner(table, "/api", method="POST") == 9
    assert winner(table, "/api", method="GET") == 4  # more conditions beat an older plain route
    assert winner(table, "/api", method="DELETE") == 5
    assert winner(RouteTable([route(8, "/a"), route(3, "/a")]), "/a") == 3


def test_methods_and_headers_narrow_a_route_and_fall_back_to_shorter_ones():
    table = RouteTable(
        [
            route(1, "/api"),
            route(2, "/api/v2", methods=["GET"], headers={"x-version": ["2", "3"]}),
        ]
    )
    assert winner(table, "/api/v2/x", HTTP_X_VERSION="3") == 2
    assert winner(table, "/api/v2/x", HTTP_X_VERSION="1") == 1
    assert winner(table, "/api/v2/x", method="POST", HTTP_X_VERSION="2") == 1


def test_ordered_entries_follow_match_order():
    table = RouteTable([route(1, "/a"), route(2, "/a/b"), route(3, "/", hosts=["h.example.com"])])
    assert [(host, path, r.id) for host, path, r in table.ordered_entries()] == [
        ("h.example.com", "/", 3),
        ("*", "/a/b", 2),
        ("*", "/a", 1),
    ]


@pytest.mark.parametrize("count", [10, 10_000])
def test_match_visits_only_the_request_path_not_every_route(count, monkeypatch):
    """Cost is bounded by path depth: count the conditions evaluated instead of timing them."""
    routes = [route(i, f"/svc{i}/items", methods=["GET"]) for i in range(count)]
    table = RouteTable(routes)
    calls = []
    original = CompiledRoute.accepts
    monkeypatch.setattr(
        CompiledRoute, "accepts", lambda self, m, e: calls.append(self.id) or original(self, m, e)
    )
    assert winner(table, f"/svc{count - 1}/items/1") == count - 1
    assert winner(table, "/nothing/here") is None
    assert len(calls) == 1
