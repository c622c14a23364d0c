"""``manage.py gateway_test_route METHOD URL [-H 'Name: value' ...]``: the route tester.

Exit status: 0 when a route takes the request, 1 when none does (Django would serve it), 2 when the
input is not a request the gateway could receive (including a path it refuses with 400).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...operations import InvalidPath, InvalidRequest, explain_request
from ...route_tester import Explanation, access_rules

NO_ROUTE = "no route: Django would serve this request"


class Command(BaseCommand):
    help = (
        "Show which route takes a request and why every other route does not, and the exact "
        "upstream URL and headers the gateway would send. Reads routes fresh from the database."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("method", help="HTTP method, e.g. GET.")
        parser.add_argument(
            "url", help="http(s)://host[:port]/path?query, or a /path with -H 'Host: ...'."
        )
        parser.add_argument(
            "-H",
            "--header",
            action="append",
            default=[],
            dest="headers",
            metavar="'Name: value'",
            help="A request header (repeatable); a Host header wins over the URL's host.",
        )
        parser.add_argument(
            "--remote-addr",
            default="127.0.0.1",
            help="The client address the gateway would see (REMOTE_ADDR). Default: 127.0.0.1.",
        )
        parser.add_argument(
            "--consumer",
            metavar="USERNAME",
            help="List the rate limits as they would count this consumer (its plan included).",
        )
        parser.add_argument("--json", action="store_true", help="Print JSON instead of text.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = explain_request(
                options["method"],
                options["url"],
                options["headers"],
                remote_addr=options["remote_addr"],
                consumer=options["consumer"],
            )
        except InvalidPath as error:
            raise CommandError(_invalid_path(error), returncode=2) from error
        except InvalidRequest as error:
            raise CommandError(str(error), returncode=2) from error
        if options["json"]:
            data = result.as_dict()
            if result.match is None:
                data["message"] = NO_ROUTE
            self.stdout.write(json.dumps(data, indent=2))
        else:
            self.stdout.write("\n".join(_report(result)))
        if result.match is None:
            raise CommandError(NO_ROUTE, returncode=1)


def _invalid_path(error: InvalidPath) -> str:
    if error.decoded_route:
        then = f"route {error.decoded_route!r} matches the decoded path, so the gateway answers 400"
    else:
        then = "no route matches the decoded path, so the gateway leaves it to Django"
    return f"invalid path: {error.detail} ({then})"


def _report(result: Explanation) -> list[str]:
    query = f"?{result.query}" if result.query else ""
    lines = [f"{result.method} {result.scheme}://{result.host}{result.path}{query}"]
    match, winner = result.match, result.winner
    if match is None:
        lines.append(NO_ROUTE)
    else:
        route = match.route
        lines.append(f"route: {route.name} (service {route.service.name})")
        if winner is not None:
            host = winner.host or "any host"
            lines.append(
                f"  matched {host}, path {winner.path}; remainder {match.remainder or '-'}"
            )
        lines.extend(f"  access: {rule}" for rule in access_rules(route, result.consumer))
    if result.losers:
        lines.append("other routes:")
        width = max(len(lost.route.name) for lost in result.losers)
        lines.extend(f"  {lost.route.name.ljust(width)}  {lost.reason}" for lost in result.losers)
    if result.refusal:
        lines.append(f"the gateway would answer {result.refusal}")
    upstream = result.upstream
    if upstream is not None:
        lines.append("upstream request:")
        where = upstream.url or f"(no target) {upstream.target}"
        lines.append(f"  {upstream.method} {where}")
        if upstream.instances > 1:
            lines.append(
                f"  (first of {upstream.instances} targets; the balancer picks one per request)"
            )
        if upstream.max_concurrent_requests is not None:
            lines.append(
                f"  (at most {upstream.max_concurrent_requests} requests in flight per gateway "
                "process; past that, 503 with Retry-After)"
            )
        if upstream.websocket:
            lines.append("  (WebSocket upgrades are carried to the upstream by the ASGI shell)")
        lines.extend(f"  {name}: {value}" for name, value in upstream.headers)
    return lines
