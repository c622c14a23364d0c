"""The targets a benchmark run is checked against, each as a ratio measured in that same run.

The figures come from the issues that introduced them (docs/benchmarks.md, "The targets"). A
missed target prints FAIL; it never changes the exit status, which only reports harness failures.
A check whose rows were not measured (``--only``, ``--skip-…``) is left out.
"""

from __future__ import annotations

MIN_VS_REVPROXY = 1.8
MIN_VS_BARE = 0.75
MAX_MATCH_RATIO = 2.0
MIN_KEY_VS_OPEN = 0.92
MIN_JWT_VS_OPEN = 0.80
MIN_LIMITED_VS_OPEN = 0.90
# Issue #10: a refactoring keeps the open route within this much of the commit before it.
MAX_BASELINE_DEVIATION = 0.05
# Issue #11: the ASGI shell.
MIN_ASGI_VS_BARE = 2.0  # ASGI open route ÷ the bare Django view (WSGI, same gunicorn settings)
MIN_ASGI_VS_FLOOR = 0.40  # ASGI open route ÷ the bare ASGI proxy
MIN_ASGI_KEY_LIMITED_VS_OPEN = 0.90
MIN_ISOLATION_KEPT = 0.80  # fast route req/s with the slow requests held ÷ alone
MAX_ISOLATION_P99_MS = 50.0
MAX_SSE_RSS_GROWTH_MB = 250.0
MIN_SSE_EVENTS_SHARE = 0.80  # of the events a stream should get in the window


def _ratio(
    t: dict, key: str, base: str, minimum: float, target: str, as_factor: bool = False
) -> list[dict]:
    """``t[key]`` req/s ÷ ``t[base]`` req/s ≥ ``minimum``, or nothing if either is missing."""
    if key not in t or base not in t:
        return []
    ratio = t[key]["rps"] / t[base]["rps"] if t[base]["rps"] else 0.0
    return [{"target": target, "passed": ratio >= minimum,
             "measured": f"{ratio:.2f}x" if as_factor else f"{ratio:.0%}"}]  # fmt: skip


def _p99_at_most(t: dict, key: str, other: str, target: str) -> list[dict]:
    if key not in t or other not in t:
        return []
    mine, theirs = t[key]["p99_ms"], t[other]["p99_ms"]
    return [{"target": target, "passed": mine <= theirs,
             "measured": f"{mine:.2f} ms vs {theirs:.2f} ms"}]  # fmt: skip


def verdicts(http: dict | None, matching: dict | None, scenarios: dict | None = None) -> list[dict]:
    checks = []
    if http:
        t = http["targets"]
        checks += [
            *_ratio(t, "gateway", "revproxy", MIN_VS_REVPROXY,
                    f"gateway req/s >= {MIN_VS_REVPROXY}x django-revproxy", as_factor=True),
            *_ratio(t, "gateway", "bare", MIN_VS_BARE,
                    f"gateway req/s >= {MIN_VS_BARE:.0%} of the bare Django view"),
            *_p99_at_most(t, "gateway", "revproxy", "gateway p99 <= django-revproxy p99"),
            *_ratio(t, "gateway-key", "gateway", MIN_KEY_VS_OPEN,
                    f"API-key route req/s >= {MIN_KEY_VS_OPEN:.0%} of the open route"),
            *_ratio(t, "gateway-jwt", "gateway", MIN_JWT_VS_OPEN,
                    f"JWT (RS256) route req/s >= {MIN_JWT_VS_OPEN:.0%} of the open route"),
            *_ratio(t, "gateway-limited", "gateway", MIN_LIMITED_VS_OPEN,
                    f"2 rate limits, Redis over TCP: req/s >= {MIN_LIMITED_VS_OPEN:.0%} of open"),
            *_ratio(t, "gateway-limited-unix", "gateway", MIN_LIMITED_VS_OPEN,
                    f"2 rate limits, Redis on Unix socket: req/s >= {MIN_LIMITED_VS_OPEN:.0%} of open"),
            *baseline_verdicts(http),
            *_ratio(t, "asgi", "bare", MIN_ASGI_VS_BARE,
                    f"ASGI open route req/s >= {MIN_ASGI_VS_BARE:g}x the bare Django view",
                    as_factor=True),
            *_ratio(t, "asgi", "bare-asgi", MIN_ASGI_VS_FLOOR,
                    f"ASGI open route req/s >= {MIN_ASGI_VS_FLOOR:.0%} of the bare ASGI proxy"),
            *_p99_at_most(t, "asgi", "gateway", "ASGI open route p99 <= WSGI gateway p99"),
            *_ratio(t, "asgi-key-limited", "asgi", MIN_ASGI_KEY_LIMITED_VS_OPEN,
                    f"ASGI API key + 2 rate limits: req/s >= {MIN_ASGI_KEY_LIMITED_VS_OPEN:.0%} "
                    "of the ASGI open route"),
            {
                "target": "every request answered without error (all targets)",
                "passed": all(row["errors"] == 0 for row in t.values()),
                "measured": ", ".join(f"{key} {row['errors']}" for key, row in t.items()),
            },
        ]  # fmt: skip
    if scenarios and scenarios.get("isolation"):
        checks += isolation_verdicts(scenarios["isolation"])
    if scenarios and scenarios.get("sse"):
        checks += sse_verdicts(scenarios["sse"])
    if matching:
        small, large = matching["sizes"]
        worst = max(matching["ratio_largest_to_smallest"].values())
        checks.append(
            {
                "target": f"route match at {large:,} routes < {MAX_MATCH_RATIO:g}x the match at {small:,}",
                "passed": worst < MAX_MATCH_RATIO and (small, large) == (10, 10_000),
                "measured": f"worst lookup {worst:.2f}x",
            }
        )
    return checks


def baseline_verdicts(http: dict) -> list[dict]:
    """With ``--baseline``: the open route against the same route on the baseline commit."""
    baseline = http["baseline"]
    t = http["targets"]
    twin = next((row for row in t.values() if row["baseline_of"] == "gateway"), None)
    if not baseline or twin is None or "gateway" not in t:
        return []
    current, before = t["gateway"]["rps"], twin["rps"]
    return [
        {
            "target": f"open route req/s, {baseline['current']} vs {baseline['short']}, "
            f"within ±{MAX_BASELINE_DEVIATION:.0%}",
            "passed": abs(current / before - 1) <= MAX_BASELINE_DEVIATION,
            "measured": f"{current / before:.2f}x ({current:,.0f} vs {before:,.0f} req/s)",
        }
    ]


def isolation_verdicts(isolation: dict) -> list[dict]:
    """The ASGI process only; the WSGI contrast is reported, not judged."""
    asgi, clients = isolation["asgi"], isolation["clients"]
    alone, loaded, held = asgi["alone"], asgi["loaded"], asgi["holders"]
    kept = loaded["rps"] / alone["rps"] if alone["rps"] else 0.0
    statuses = ", ".join(f"{s} x {n:,}" for s, n in sorted(held["statuses"].items())) or "none"
    really_held = (
        held["connected"] == clients
        and held["lost"] == 0
        and held["responses"] > 0
        and set(held["statuses"]) == {"200"}
    )
    return [
        {
            "target": f"isolation: ASGI fast route keeps >= {MIN_ISOLATION_KEPT:.0%} of its req/s "
            f"with {clients:,} slow requests held",
            "passed": kept >= MIN_ISOLATION_KEPT,
            "measured": f"{kept:.0%} ({loaded['rps']:,.0f} vs {alone['rps']:,.0f} req/s alone)",
        },
        {
            "target": f"isolation: ASGI fast route p99 < {MAX_ISOLATION_P99_MS:g} ms "
            "with the slow requests held",
            "passed": loaded["p99_ms"] < MAX_ISOLATION_P99_MS and loaded["errors"] == 0,
            "measured": f"{loaded['p99_ms']:.2f} ms ({alone['p99_ms']:.2f} ms alone), "
            f"{loaded['errors']} errors",
        },
        {
            "target": f"isolation: the {clients:,} slow requests were held (all connected, "
            "none lost, every answer 200)",
            "passed": really_held,
            "measured": f"{held['connected']:,} connected, {held['lost']} lost; "
            f"slow answers {statuses} ({held['rps']:,.0f}/s, p50 {held['latency_ms']['p50']:,.0f} ms)",
        },
    ]


def sse_verdicts(sse: dict) -> list[dict]:
    counted, rss = sse["clients"], sse["rss_mb"]
    events = counted["events"]
    return [
        {
            "target": f"SSE: the ASGI process grows < {MAX_SSE_RSS_GROWTH_MB:g} MB "
            f"holding {sse['streams']:,} streams",
            "passed": sse["rss_growth_mb"] < MAX_SSE_RSS_GROWTH_MB,
            "measured": f"+{sse['rss_growth_mb']:,.1f} MB (idle {rss['idle']:,.1f} MB, "
            f"peak {rss['peak']:,.1f} MB)",
        },
        {
            "target": f"SSE: no stream starved (each got >= {MIN_SSE_EVENTS_SHARE:.0%} "
            "of the expected events)",
            "passed": counted["starved"] == 0 and counted["opened"] == sse["streams"],
            "measured": f"{counted['opened']:,} of {sse['streams']:,} opened, "
            f"{counted['starved']} starved; events per stream min {events['min']}, "
            f"median {events['median']:g} of {counted['expected_per_stream']:g} expected",
        },
    ]


def verdict_lines(checks: list[dict]) -> list[str]:
    """One ``PASS``/``FAIL`` line per check, as both benchmark scripts print them."""
    return [
        f"{'PASS' if check['passed'] else 'FAIL'}  {check['target']}: {check['measured']}"
        for check in checks
    ]
