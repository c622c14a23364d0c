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
    """One row per target; with ``--baseline``, a column comparing each gateway row to its twin."""
    targets = http["targets"]
    revproxy, bare = targets["revproxy"]["rps"], targets["bare"]["rps"]
    twins = {row["baseline_of"]: row for row in targets.values() if row["baseline_of"]}
    versus = [f"vs @{http['baseline']['short']}"] if http["baseline"] else []
    header = [
        "target", "req/s", "p50 (ms)", "p99 (ms)", "vs django-revproxy", "vs bare Django",
        *versus, "server CPU µs/req", "server core share", "errors",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for key, row in targets.items():
        twin = row if row["baseline_of"] else twins.get(key)
        cells = [
            row["label"], f"{row['rps']:,.0f}", f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}",
            f"{row['rps'] / revproxy:.2f}x", f"{row['rps'] / bare:.2f}x",
            *([f"{row['rps'] / twin['rps']:.2f}x" if twin else ""] if versus else []),
            f"{row['cpu_us_per_request']:,.0f}", f"{row['core_share']:.0%}", str(row["errors"]),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_results(result: dict, targets: tuple[Target, ...], server_core: int | None) -> None:
    say()
    env = result["environment"]
    say(
        f"{env['cpu']}, {env['cpus']} CPUs, Python {env['python']}, Django {env['django']}, "
        f"gunicorn {env['gunicorn']}, django-revproxy {env['django-revproxy']}, commit {env['commit']}"
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
            if t.variant and http["targets"][t.key]["core_share"] < CORE_SHARE_WARNING
        ]
        if starved:
            say(
                f"\nwarning: the Django servers did not get their core to themselves "
                f"({', '.join(starved)} of core {server_core}); other processes were running, so "
                "req/s and p99 understate them. CPU µs/req still holds. Rerun on a quiet machine."
            )
    if matching:
        say()
        repeats, loops = matching["repeats"], matching["loops"]
        say(f"## Route match (RouteTable.match, median of {repeats} x {loops:,} calls)")
        say()
        say(route_match.markdown(matching))
    say()
    for line in verdict_lines(result["checks"]):
        say(line)
