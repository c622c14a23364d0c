"""Route regexes: RE2 runs them, and what RE2 cannot run is refused by name when a route is saved."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from django_gateway.models import Route, Service
from django_gateway.models.validation import route_hosts, route_paths
from django_gateway.route_regex import compile_route_regex
from django_gateway.routing import RouteTable
from django_gateway.snapshot import build_snapshot


@pytest.mark.parametrize(
    ("regex", "construct"),
    [
        (r"~/users/\d+(?=/|$)", "lookahead (?=...)"),
        (r"~/x(?!y)", "negative lookahead"),
        (r"~/x(?<=x)", "lookbehind (?<=...)"),
        (r"~/(\w+)/\1", "backreference"),
        (r"~/a++", "possessive quantifier"),
        (r"~/(?>a)", "atomic group"),
        (r"~/a{1,5000}", "repetition count over 1000"),
    ],
)
def test_constructs_re2_cannot_run_are_refused_by_name(regex, construct):
    with pytest.raises(ValidationError) as info:
        route_paths([regex])
    assert construct in info.value.messages[0]
    assert "RE2" in info.value.messages[0]


def test_a_catastrophic_pattern_is_accepted_because_re2_runs_it_in_linear_time():
    assert route_paths([r"~^/(a+)+$"]) == [r"~^/(a+)+$"]
    regex = compile_route_regex(r"^/(a+)+$")
    assert regex.match_end("/" + "a" * 100_000 + "!") is None
    assert regex.match_end("/aaa") == 4


def test_match_end_is_a_character_index_on_non_ascii_paths():
    assert compile_route_regex(r"/café/\d+").match_end("/café/42/x") == 8


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["/" + "a" * 5000], "longer than 1024"),
        (["~/" + "a" * 5000], "longer than 1024"),
    ],
)
def test_paths_have_a_bounded_length(value, message):
    with pytest.raises(ValidationError) as info:
        route_paths(value)
    assert message in info.value.messages[0]


def test_hosts_are_stored_in_the_form_requests_are_matched_in():
    assert route_hosts(["GW.Test.", "*.Bücher.example", "straße.de:8443"]) == [
        "gw.test",
        "*.xn--bcher-kva.example",
        "xn--strae-oqa.de:8443",
    ]
    with pytest.raises(ValidationError, match="longer than 253"):
        route_hosts([("a" * 60 + ".") * 5 + "com"])
    with pytest.raises(ValidationError, match="one per line"):
        route_hosts(["a.localhost, b.localhost"])


@pytest.mark.django_db
def test_a_regex_saved_before_re2_is_left_out_of_the_table_not_the_whole_gateway(caplog):
    """A row written before this check (or by ``QuerySet.update``) must not stop every route."""
    service = Service.objects.create(name="svc")
    Route.objects.create(name="old", service=service, paths=[r"~/x(?=y)", "/old"])
    Route.objects.create(name="fine", service=service, paths=["/fine"])
    table: RouteTable = build_snapshot().routes
    assert table.match("GET", "h", "/fine").route.name == "fine"
    assert table.match("GET", "h", "/old/1").route.name == "old"
    assert table.match("GET", "h", "/xy") is None
    assert "left out '~/x(?=y)'" in caplog.text
