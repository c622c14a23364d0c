"""Route-match cost at 10, 1 000 and 10 000 routes, timed on ``RouteTable.match`` alone.

The tables are built from :class:`~django_gateway.routing.CompiledRoute` objects directly (no
database), shaped like a real configuration: services with a few versioned resources each
(``/svc42/v1/orders``), one route in ten bound to a tenant host, two wildcard-host routes, a few
routes limited to methods or requiring a header, and three regex routes. The regex and wildcard
routes are the same few at every size: those are the parts of the matcher that are linear by design
(docs/routing.md), and a table does not grow them with its route count.

Three lookups per table: a deep path under the newest service (host-less route), a path under a
tenant-host route, and a miss that falls through to Django. Each figure is the median over
``repeats`` of the mean over ``loops`` back-to-back calls, with the garbage collector paused; the
repeats go round-robin over the table sizes so outside load hits every size alike.

    python -m benchmarks.route_match            # table on stdout
    python -m benchmarks.route_match --json     # the figures run.py records
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from dataclasses import dataclass

from django_gateway.config import CompiledRoute
from django_gateway.routing import RouteTable

SIZES = (10, 1_000, 10_000)
RESOURCES = ("users", "orders", "items", "search")
REGEX_PATHS = (
    r"~^/legacy/v[0-9]+/orders/[0-9]+",
    r"~^/files/.+\.(png|jpg|gif)$",
    r"~^/u/[a-z]+/avatar",
)
ENVIRON = {
    "REQUEST_METHOD": "GET",
    "HTTP_ACCEPT": "application/json",
    "HTTP_USER_AGENT": "wrk",
    "HTTP_X_VERSION": "2",
}


@dataclass(frozen=True)
class _Service:
    name: str


@dataclass(frozen=True)
class Lookup:
    label: str
    host: str
    path: str
    expect: int | None  # the route id that must win, None for a miss


def build_routes(count: int) -> list[CompiledRoute]:
    routes: list[CompiledRoute] = []
    fixed = [
        dict(paths=(REGEX_PATHS[0],)),
        dict(paths=(REGEX_PATHS[1],), methods=frozenset({"GET", "HEAD"})),
        dict(paths=(REGEX_PATHS[2],)),
        dict(paths=("/",), hosts=("*.apps.example.com",)),
        dict(paths=("/api",), hosts=("*.internal.example.net",)),
    ]
    for index in range(count):
        if index < len(fixed) and count > len(fixed):
            fields = fixed[index]
        else:
            service = index // len(RESOURCES)
            path = f"/svc{service}/v{1 + index % 2}/{RESOURCES[index % len(RESOURCES)]}"
            fields = dict(paths=(path,))
            if index % 10 == 5:
                fields["hosts"] = (f"tenant{index}.example.com",)
            if index % 7 == 3:
                fields["methods"] = frozenset({"GET", "POST"})
            if index % 13 == 4:
                fields["headers"] = (("x-version", frozenset({"2", "3"})),)
        routes.append(
            CompiledRoute(
                id=index + 1,
                name=f"route-{index}",
                service=_Service(f"svc{index // len(RESOURCES)}"),
                paths=fields["paths"],
                hosts=fields.get("hosts", ()),
                methods=fields.get("methods", frozenset()),
                headers=fields.get("headers", ()),
            )
        )
    return routes


def lookups(routes: list[CompiledRoute]) -> list[Lookup]:
    def newest(predicate) -> CompiledRoute:  # type: ignore[no-untyped-def]
        return next(r for r in reversed(routes) if predicate(r))

    plain = newest(
        lambda r: not r.hosts and not r.headers and not r.paths[0].startswith(("~", "/api"))
    )
    tenant = newest(lambda r: r.hosts and not r.hosts[0].startswith("*") and not r.headers)
    return [
        Lookup(
            "hit, deep path", "gateway.example.com", plain.paths[0] + "/12345/details", plain.id
        ),
        Lookup("hit, tenant host", tenant.hosts[0], tenant.paths[0] + "/67890", tenant.id),
        Lookup("miss (to Django)", "gateway.example.com", "/static/css/site.css", None),
    ]


def _check(table: RouteTable, lookup: Lookup) -> None:
    found = table.match("GET", lookup.host, lookup.path, ENVIRON)
    winner = found.route.id if found else None
    if winner != lookup.expect:
        raise AssertionError(f"{lookup.label}: route {winner} matched, expected {lookup.expect}")


def _time_once(table: RouteTable, lookup: Lookup, loops: int) -> float:
    match, host, path = table.match, lookup.host, lookup.path
    start = time.perf_counter_ns()
    for _ in range(loops):
        match("GET", host, path, ENVIRON)
    return (time.perf_counter_ns() - start) / loops


def run(sizes: tuple[int, ...] = SIZES, repeats: int = 15, loops: int = 10_000) -> dict:
    """Nanoseconds per ``match`` call, per size and lookup: the median of ``repeats`` means.

    The repeats go round-robin over the sizes, so a burst of load from elsewhere on the machine
    lands on every size alike instead of skewing the ratio.
    """
    tables = []
    for size in sizes:
        routes = build_routes(size)
        started = time.perf_counter()
        table = RouteTable(routes)
        build_ms = (time.perf_counter() - started) * 1000
        cases = lookups(routes)
        for lookup in cases:
            _check(table, lookup)
        tables.append((size, table, cases, build_ms))
    samples: dict[tuple[int, str], list[float]] = {}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for size, table, cases, _ in tables:
                for lookup in cases:
                    samples.setdefault((size, lookup.label), []).append(
                        _time_once(table, lookup, loops)
                    )
    finally:
        if gc_was_enabled:
            gc.enable()
    rows = [
        {
            "routes": size,
            "build_ms": round(build_ms, 2),
            "match_ns": {
                c.label: round(statistics.median(samples[size, c.label]), 1) for c in cases
            },
        }
        for size, _, cases, build_ms in tables
    ]
    smallest, largest = rows[0], rows[-1]
    ratios = {
        label: round(largest["match_ns"][label] / smallest["match_ns"][label], 3)
        for label in smallest["match_ns"]
    }
    return {
        "repeats": repeats,
        "loops": loops,
        "rows": rows,
        "ratio_largest_to_smallest": ratios,
        "sizes": [smallest["routes"], largest["routes"]],
    }


def markdown(result: dict) -> str:
    labels = list(result["rows"][0]["match_ns"])
    lines = [
        "| routes | " + " | ".join(f"{label} (µs)" for label in labels) + " | table build (ms) |",
        "|---:|" + "---:|" * len(labels) + "---:|",
    ]
    for row in result["rows"]:
        cells = " | ".join(f"{row['match_ns'][label] / 1000:.2f}" for label in labels)
        lines.append(f"| {row['routes']:,} | {cells} | {row['build_ms']:.1f} |")
    small, large = result["sizes"]
    ratios = " | ".join(f"{result['ratio_largest_to_smallest'][label]:.2f}x" for label in labels)
    lines.append(f"| ratio {large:,} / {small:,} | {ratios} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Time RouteTable.match at several table sizes.")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--loops", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    result = run(sizes, args.repeats, args.loops)
    print(json.dumps(result) if args.json else markdown(result))


if __name__ == "__main__":
    main()
