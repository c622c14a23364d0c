"""What a run of ``benchmarks/run.py`` prints: the machine, the tables and the PASS/FAIL lines.

Everything here reads the result dictionary that ``run.py`` also writes as JSON, so the console
and ``benchmarks/results/latest.json`` cannot disagree.
"""

from __future__ import annotations

from . import route_match
from .targets import Target
from .verdicts import verdict_lines

# Below this share of the server core, a saturated Django target was competing with other processes.
CORE_SHARE_WARNING = 0.9


def say(text: str = "") -> None:
    print(text, flush=True)


def http_table(http: dict) -> str:
    """One row per target; ratio columns to the rows measured (revproxy, bare Django, the bare ASGI
    proxy); with ``--baseline``, a column comparing each gateway row to its twin."""
    targets = http["targets"]
    bases = [(key, name) for key, name in (("revproxy", "django-revproxy"), ("bare", "bare Django"),
             ("bare-asgi", "bare ASGI proxy")) if key in targets]  # fmt: skip
    twins = {row["baseline_of"]: row for row in targets.values() if row["baseline_of"]}
    versus = [f"vs @{http['baseline']['short']}"] if http["baseline"] else []
    header = [
        "target", "req/s", "p50 (ms)", "p99 (ms)", *(f"vs {name}" for _, name in bases),
        *versus, "server CPU µs/req", "server core share", "errors",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for key, row in targets.items():
        twin = row if row["baseline_of"] else twins.get(key)
        cells = [
            row["label"], f"{row['rps']:,.0f}", f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}",
            *(_times(row["rps"], targets[base]["rps"]) for base, _ in bases),
            *([_times(row["rps"], twin["rps"]) if twin else ""] if versus else []),
            f"{row['cpu_us_per_request']:,.0f}", f"{row['core_share']:.0%}", str(row["errors"]),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _times(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else ""


def isolation_table(isolation: dict) -> str:
    """The fast route alone and with the slow requests held, per shell."""
    header = [
        "gateway", "fast alone req/s", "p99 (ms)", "fast, slow held: req/s", "p99 (ms)", "kept",
        "fast errors", "slow answers/s", "slow p50 (ms)", "slow p99 (ms)",
        "server CPU µs/req alone", "… held (fast + slow)",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for shell, name in (
        ("asgi", "ASGI (uvicorn, 1 worker)"),
        ("wsgi", "WSGI (gunicorn gthread 2x64)"),
    ):
        run = isolation.get(shell)
        if not run:
            continue
        alone, loaded, held = run["alone"], run["loaded"], run["holders"]
        loaded_p99 = f"{loaded['p99_ms']:.2f}" if loaded["requests"] else "none answered"
        kept = f"{loaded['rps'] / alone['rps']:.0%}" if alone["rps"] else ""
        cells = [
            name, f"{alone['rps']:,.0f}", f"{alone['p99_ms']:.2f}", f"{loaded['rps']:,.0f}",
            loaded_p99, kept,
            str(loaded["errors"]), f"{held['rps']:,.0f}", f"{held['latency_ms']['p50']:,.0f}",
            f"{held['latency_ms']['p99']:,.0f}", f"{alone['cpu_us_per_request']:,.0f}",
            f"{loaded['cpu_us_per_request_served']:,.0f}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sse_table(sse: dict) -> str:
    counted, rss, events = sse["clients"], sse["rss_mb"], sse["clients"]["events"]
    rows = [
        ("streams opened", f"{counted['opened']:,} of {sse['streams']:,} "
                           f"(in {sse['connect_seconds']:.1f} s)"),
        ("events per stream in the window", f"min {events['min']}, 1st percentile {events['p1']}, "
                                            f"median {events['median']:g}, max {events['max']} "
                                            f"(expected {counted['expected_per_stream']:g} in "
                                            f"{counted['window_s']:.1f} s)"),
        ("starved streams (< 80% of expected)", str(counted["starved"])),
        ("ASGI process RSS (MB)", f"idle {rss['idle']:,.1f}, streams open {rss['streams_open']:,.1f}, "
                                  f"peak {rss['peak']:,.1f}, after close {rss['after_close']:,.1f}"),
        ("RSS growth (peak - idle)", f"{sse['rss_growth_mb']:,.1f} MB"),
        ("ASGI process CPU per event", f"{sse['cpu_us_per_event']:,.0f} µs"),
    ]  # fmt: skip
    return "\n".join(["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def print_results(result: dict, targets: tuple[Target, ...], server_core: int | None) -> None:
    say()
    env = result["environment"]
    say(
        f"{env['cpu']}, {env['cpus']} CPUs, Python {env['python']}, Django {env['django']}, "
        f"gunicorn {env['gunicorn']}, django-revproxy {env['django-revproxy']}, "
        f"uvicorn {env.get('uvicorn')}, uvloop {env.get('uvloop')}, commit {env['commit']}"
    )
    say(
        f"load average before/after: {result['load_average_before']} / {result['load_average_after']}"
    )
    http, matching = result["http"], result["route_match"]
    if http:
        say()
        load = http["load"]
        say(
            f"## HTTP: GET, 1 KiB response, {load['connections']} connections, "
            f"{load['duration_s']:.0f}s x {load['rounds']} round(s) per target"
        )
        say(f"upstream {http['upstream']['version']}; gateway cache {http['gateway_cache']}")
        say(f"gunicorn {http['gunicorn']}")
        if any(key.startswith(("asgi", "bare-asgi")) for key in http["targets"]):
            say(f"uvicorn {http['uvicorn']}")
            say(f"gunicorn {http['asgi_gunicorn']} (ASGI under gunicorn)")
        if http["baseline"]:
            baseline = http["baseline"]
            say(
                f"baseline: django_gateway of {baseline['short']} ({baseline['requested']}), "
                f"database {baseline['database']}; the other gateway rows run {baseline['current']}"
            )
        say()
        say(http_table(http))
        starved = [
            f"{t.label} {http['targets'][t.key]['core_share']:.0%}"
            for t in targets
            if t.variant
            and t.key in http["targets"]
            and http["targets"][t.key]["core_share"] < CORE_SHARE_WARNING
        ]
        if starved:
            say(
                f"\nwarning: the servers did not get their core to themselves "
                f"({', '.join(starved)} of core {server_core}); other processes were running, so "
                "req/s and p99 understate them. CPU µs/req still holds. Rerun on a quiet machine."
            )
    scenarios = result.get("scenarios") or {}
    if scenarios.get("isolation"):
        isolation = scenarios["isolation"]
        say()
        say(
            f"## Isolation: GET {isolation['fast_path']} while {isolation['clients']:,} clients hold "
            f"GET {isolation['slow_path']} ({isolation['delay_s']:g} s upstream), clients on core "
            f"{isolation['holder_core']}"
        )
        say()
        say(isolation_table(isolation))
    if scenarios.get("sse"):
        sse = scenarios["sse"]
        say()
        say(f"## SSE: {sse['streams']:,} streams through one ASGI process, one event/s each")
        say(f"{sse['server']}; clients on core {sse['client_core']}")
        say()
        say(sse_table(sse))
    if matching:
        say()
        repeats, loops = matching["repeats"], matching["loops"]
        say(f"## Route match (RouteTable.match, median of {repeats} x {loops:,} calls)")
        say()
        say(route_match.markdown(matching))
    say()
    for line in verdict_lines(result["checks"]):
        say(line)
