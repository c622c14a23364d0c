"""One command for DESIGN §7: throughput and latency of four HTTP targets, and route-match cost.

    make bench                              # or: .venv/bin/python benchmarks/run.py
    .venv/bin/python benchmarks/run.py --duration 30 --rounds 3
    make bench BENCH_ARGS="--baseline 72b1590"   # the gateway's rows on that commit too

On loopback only. The upstream (nginx, or a Python stand-in when nginx is missing) serves a fixed
1 KiB body; wrk drives it directly, then through a bare Django view, django-revproxy and
django-gateway, each under the same gunicorn settings. wrk is pinned to one core and every server
to the other (taskset), because on two shared cores the load generator otherwise steals the
servers' CPU. The route-match micro-benchmark runs afterwards, pinned to the server core.
With ``--baseline REV`` the gateway's rows are measured a second time, interleaved, on commit REV's
django_gateway (:mod:`benchmarks.baseline`), and the open route is checked against it.

Prints markdown tables and PASS/FAIL against the targets of the issue, and writes everything to
``benchmarks/results/latest.json``. Exits non-zero only when the harness itself fails (a server that
does not start, wrk missing); a missed target is a FAIL line, not an error. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(REPO))

from benchmarks import loadgen, servers  # noqa: E402
from benchmarks.baseline import (  # noqa: E402
    Baseline,
    Checkout,
    check_import,
    checkout,
    current_revision,
    export,
    resolve,
    round_order,
    same_migrations,
    with_twins,
)
from benchmarks.redis_server import start_redis  # noqa: E402
from benchmarks.report import print_results, say  # noqa: E402
from benchmarks.targets import TARGETS, Target, credential_headers  # noqa: E402
from benchmarks.verdicts import verdicts  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "latest.json"
REDIS_ADDRESS = ("127.0.0.1", 6379)
REDIS_DB = 14


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="django-gateway benchmarks (docs/benchmarks.md)")
    parser.add_argument(
        "--duration", type=float, default=10, help="seconds of measurement per target [10]"
    )
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per target [2]")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections [16]")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measure every target this often, interleaved; the table shows medians [3]",
    )
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes [1]")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads per worker [16]")
    parser.add_argument("--upstream", choices=("auto", "nginx", "python"), default="auto")
    parser.add_argument(
        "--cache",
        choices=("auto", "redis", "locmem"),
        default="auto",
        help=f"the gateway's cache: Redis at 127.0.0.1:6379 db {REDIS_DB}, or local memory",
    )
    parser.add_argument("--wrk-core", type=int, help="core for wrk [the first available]")
    parser.add_argument(
        "--server-core", type=int, help="core for every server [the second available]"
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure the gateway's rows on commit REV's django_gateway, interleaved",
    )
    parser.add_argument("--skip-http", action="store_true", help="only the route-match benchmark")
    parser.add_argument("--skip-route-match", action="store_true", help="only the HTTP benchmark")
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help=f"JSON results [{RESULTS.relative_to(REPO)}]"
    )
    return parser.parse_args()


def cores(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """(load generator core, server core), or no pinning on a single-core machine."""
    available = sorted(os.sched_getaffinity(0))
    if args.wrk_core is not None and args.server_core is not None:
        return args.wrk_core, args.server_core
    if len(available) < 2:
        say(
            "warning: fewer than two cores available; nothing is pinned and figures will be muddied"
        )
        return None, None
    return available[0], available[1]


def redis_reachable() -> bool:
    try:
        with socket.create_connection(REDIS_ADDRESS, timeout=0.3):
            return True
    except OSError:
        return False


def clear_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis(*REDIS_ADDRESS, db=REDIS_DB, socket_timeout=1)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)


# --- the HTTP benchmark ----------------------------------------------------------------------------


def run_http(
    args: argparse.Namespace,
    targets: tuple[Target, ...],
    baseline: Baseline | None,
    wrk_core: int | None,
    server_core: int | None,
) -> dict:
    loadgen.wrk_binary()  # fail early, with the install hint
    load = loadgen.Load(args.connections, 1, args.duration, args.warmup, wrk_core)
    gunicorn = servers.GunicornSettings(workers=args.workers, threads=args.threads)
    use_redis = args.cache == "redis" or (args.cache == "auto" and redis_reachable())
    if args.cache == "redis" and not redis_reachable():
        raise RuntimeError(f"no Redis at {REDIS_ADDRESS[0]}:{REDIS_ADDRESS[1]}")
    cache_prefix = f"gwbench-{uuid.uuid4().hex[:8]}"
    venv_bin = Path(sys.executable).parent
    measurements: dict[str, list[dict]] = {t.key: [] for t in targets}
    checkouts: dict[bool, Checkout] = {}  # the package each server runs, by "is a baseline row"
    baseline_run: dict | None = None

    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as workdir_name:
        workdir = Path(workdir_name)
        processes = servers.Processes(workdir)
        try:
            upstream = servers.start_upstream(
                processes, workdir, server_core, sys.executable, REPO, args.upstream
            )
            if upstream.kind != "nginx":
                say(
                    "note: nginx is not installed (apt-get install nginx-light); the upstream is a Python "
                    "stand-in, so 'upstream direct' is far below what nginx would do"
                )
            redis_url = f"redis://{REDIS_ADDRESS[0]}:{REDIS_ADDRESS[1]}/{REDIS_DB}"
            env = {
                **os.environ,
                "PYTHONPATH": str(REPO),
                "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
                "BENCH_UPSTREAM_URL": upstream.url,
                "BENCH_DB_PATH": str(workdir / "bench.sqlite3"),
                "BENCH_REDIS_URL": redis_url if use_redis else "",
                "BENCH_CACHE_PREFIX": cache_prefix,
                "BENCH_CREDENTIALS_PATH": str(workdir / "credentials.json"),
            }
            limits_redis = start_redis(processes, workdir)
            if limits_redis is None:
                say(
                    "note: redis-server is not installed; the rate-limit targets use the cache's Redis"
                )
            checkouts[False] = Checkout(REPO, env)
            seed(checkouts[False])
            if baseline is not None:
                root = export(baseline, REPO, workdir)
                own_database = not same_migrations(root, REPO)
                checkouts[True] = checkout(root, env, workdir, own_database=own_database)
                check_import(checkouts[True], sys.executable)
                if own_database:
                    seed(checkouts[True])
                baseline_run = {
                    **asdict(baseline), "current": current_revision(REPO),
                    "database": "own, built by its own migrations" if own_database
                    else "shared (same migrations)",
                }  # fmt: skip
            credentials = {
                is_baseline: json.loads(Path(tree.env["BENCH_CREDENTIALS_PATH"]).read_text())
                for is_baseline, tree in checkouts.items()
            }
            ports, leaders = {"upstream": upstream.port}, {"upstream": upstream.pid}
            for target in targets:
                tree = checkouts[bool(target.baseline_of)]
                if target.variant:
                    target_env = {**tree.env, "BENCH_VARIANT": target.variant}
                    if limits_redis is not None:
                        limits = replace(limits_redis, db=tree.redis_db)
                        target_env["BENCH_RATELIMIT_URL"] = (
                            limits.unix_url
                            if target.rate_limit_transport == "unix"
                            else limits.tcp_url
                        )
                    ports[target.key], leaders[target.key] = servers.start_gunicorn(
                        processes, target.key, target_env, gunicorn,
                        venv_bin=venv_bin, root=tree.root, core=server_core, probe_path=target.path,
                    )  # fmt: skip
                elif target.server:
                    ports[target.key] = ports[target.server]
                    leaders[target.key] = leaders[target.server]
            say(f"upstream: {upstream.version} on {upstream.url} ({upstream.kind})")
            say(f"gunicorn (every Django target): {gunicorn.describe()}")
            say(
                f"gateway cache: {f'Redis db {REDIS_DB}' if use_redis else 'local memory (SQLite poll)'}"
            )
            say(
                f"wrk: -t1 -c{load.connections} -d{load.duration:.0f}s after {load.warmup:.0f}s warm-up; "
                f"wrk on core {wrk_core}, servers on core {server_core}"
            )
            for round_number in range(1, args.rounds + 1):
                for target in round_order(targets, round_number):
                    say(
                        f"  round {round_number}/{args.rounds}: {target.label} (GET {target.path}) ..."
                    )
                    involved = {key: leaders[key] for key in {"upstream", target.key}}
                    headers = credential_headers(target, credentials[bool(target.baseline_of)])
                    measurements[target.key].append(
                        measure(
                            ports[target.key], target.path, load, involved, server_core, headers
                        )
                    )
        finally:
            processes.stop_all()
            if use_redis:
                for tree in checkouts.values():
                    prefix = tree.env["BENCH_CACHE_PREFIX"]
                    try:
                        clear_redis_prefix(prefix)
                    except Exception as exc:  # cleanup must not hide the real outcome
                        say(f"warning: could not remove Redis keys {prefix}:*: {exc}")

    return {
        "upstream": {"kind": upstream.kind, "version": upstream.version},
        "gunicorn": gunicorn.describe(),
        "gateway_cache": f"redis db {REDIS_DB}" if use_redis else "locmem",
        "load": {"tool": "wrk", "threads": 1, "connections": load.connections,
                 "duration_s": load.duration, "warmup_s": load.warmup,
                 "wrk_core": wrk_core, "server_core": server_core, "rounds": args.rounds,
                 "response_body_bytes": 1024, "method": "GET"},
        "baseline": baseline_run,
        "targets": {
            t.key: {"label": t.label, "path": t.path, "baseline_of": t.baseline_of,
                    **summarise(measurements[t.key])}
            for t in targets
        },
    }  # fmt: skip


def seed(tree: Checkout) -> None:
    """Migrate and seed the database of ``tree.env`` with that checkout's package."""
    command = [sys.executable, "-m", "benchmarks.seed"]
    subprocess.run(command, env=tree.env, cwd=tree.root, check=True, timeout=120)


def measure(
    port: int,
    path: str,
    load: loadgen.Load,
    leaders: dict[str, int],
    core: int | None,
    headers: list[str] = (),  # type: ignore[assignment]
) -> dict:
    """Warm up (pools fill, the snapshot loads), then measure, counting the servers' CPU time.

    The CPU figures hold on a busy machine where req/s does not: CPU time per request is what the
    servers spent, whoever else was using the core, and ``core_share`` says how much of the server
    core they actually got (the rest went to other processes, or sat idle).
    """
    if load.warmup > 0:
        loadgen.run_wrk(port, path, load, load.warmup, headers)
    cpu_before = {key: servers.group_cpu_seconds(pid) for key, pid in leaders.items()}
    busy_before, elapsed_before = servers.core_busy_seconds(core)
    result = loadgen.run_wrk(port, path, load, load.duration, headers)
    busy_after, elapsed_after = servers.core_busy_seconds(core)
    cpu = {key: servers.group_cpu_seconds(pid) - cpu_before[key] for key, pid in leaders.items()}
    elapsed = max(elapsed_after - elapsed_before, 1e-9)
    return {
        **result.as_dict(),
        "cpu_s": {key: round(value, 3) for key, value in cpu.items()},
        "cpu_us_per_request": round(sum(cpu.values()) / max(result.requests, 1) * 1e6, 1),
        "core_share": round(sum(cpu.values()) / elapsed, 3),
        "core_busy": round((busy_after - busy_before) / elapsed, 3),
    }


def summarise(rounds: list[dict]) -> dict:
    """One round as it is; several as the median of each figure, with every round kept."""

    def median(name: str) -> float:
        return round(statistics.median(m[name] for m in rounds), 3)

    return {
        "rps": median("rps"),
        "p50_ms": median("p50_ms"),
        "p90_ms": median("p90_ms"),
        "p99_ms": median("p99_ms"),
        "cpu_us_per_request": median("cpu_us_per_request"),
        "core_share": median("core_share"),
        "core_busy": median("core_busy"),
        "errors": sum(m["errors"] for m in rounds),
        "requests": sum(m["requests"] for m in rounds),
        "rounds": rounds,
    }


# --- the machine ----------------------------------------------------------------------------------


def environment() -> dict:
    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    ) if Path("/proc/cpuinfo").exists() else platform.processor()  # fmt: skip

    def first_line(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return "unknown"
        return (done.stdout.strip() or "unknown").splitlines()[0]

    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "django": version("Django"),
        "gunicorn": version("gunicorn"),
        "django-revproxy": version("django-revproxy"),
        "httptools": version("httptools"),
        "wrk": first_line(["wrk", "--version"]),
        "commit": first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
    }


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks, stop children
    wrk_core, server_core = cores(args)
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    http = matching = None
    try:
        baseline = resolve(args.baseline, REPO) if args.baseline else None
        targets = with_twins(TARGETS, baseline) if baseline else TARGETS
        if not args.skip_http:
            say("HTTP benchmark")
            http = run_http(args, targets, baseline, wrk_core, server_core)
        if not args.skip_route_match:
            say("route-match benchmark ...")
            command = servers.pinned(
                [sys.executable, "-m", "benchmarks.route_match", "--json"], server_core
            )
            done = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                  capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"route-match benchmark failed:\n{done.stderr}")
            matching = json.loads(done.stdout)
    except loadgen.WrkMissing as exc:
        say(f"error: {exc}")
        return 2
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        say(f"error: the benchmark harness failed: {exc}")
        return 1

    checks = verdicts(http, matching)
    result = {
        "started": started.isoformat(timespec="seconds"),
        "environment": environment(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "http": http,
        "route_match": matching,
        "checks": checks,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print_results(result, targets, server_core)
    say(f"\nresults written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
