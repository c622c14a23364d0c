"""One command for DESIGN §7: throughput and latency of the HTTP targets, the ASGI shell's
scenarios, and route-match cost.

    make bench                              # or: .venv/bin/python benchmarks/run.py
    .venv/bin/python benchmarks/run.py --duration 30 --rounds 3
    .venv/bin/python benchmarks/run.py --only 'bare,gateway,asgi*' --duration 3 --rounds 1
    .venv/bin/python benchmarks/run.py --skip-http --skip-route-match --skip-isolation --sse
    make bench BENCH_ARGS="--baseline 72b1590"   # the gateway's rows on that commit too

On loopback only. The upstream (nginx, or a Python stand-in when nginx is missing) serves a fixed
1 KiB body; wrk drives it directly, then through a bare Django view, django-revproxy and
django-gateway, each under the same gunicorn settings, then through the gateway's ASGI shell
(uvicorn, and gunicorn with uvicorn's worker) and a bare ASGI proxy with no Django. wrk is pinned
to one core and every server to the other (taskset), because on two shared cores the load
generator otherwise steals the servers' CPU. The isolation scenario (and the SSE one with
``--sse``, :mod:`benchmarks.scenarios`) and the route-match micro-benchmark run afterwards.
With ``--baseline REV`` the gateway's rows are measured a second time, interleaved, on commit REV's
django_gateway (:mod:`benchmarks.baseline`), and the open route is checked against it.

Prints markdown tables and PASS/FAIL against the targets of the issues, and writes everything to
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

from benchmarks import loadgen, scenarios, servers  # noqa: E402
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
from benchmarks.targets import (  # noqa: E402
    ASGI_GUNICORN,
    BARE_UVICORN,
    TARGETS,
    UVICORN,
    WSGI_GUNICORN,
    Target,
    credential_headers,
    selected,
)
from benchmarks.verdicts import verdicts  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "latest.json"
REDIS_ADDRESS = ("127.0.0.1", 6379)
REDIS_DB = 14
ASGI_WORKER_CLASS = "uvicorn_worker.UvicornWorker"


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
    parser.add_argument(
        "--only",
        metavar="KEYS",
        help="measure only these HTTP targets: comma-separated keys or patterns (asgi*,bare)",
    )
    parser.add_argument("--skip-http", action="store_true", help="leave out the HTTP table")
    parser.add_argument("--skip-route-match", action="store_true", help="leave out route matching")
    parser.add_argument(
        "--skip-isolation", action="store_true", help="leave out the isolation scenario"
    )
    parser.add_argument("--sse", action="store_true", help="also run the SSE scenario")
    scenario = parser.add_argument_group("scenarios (docs/benchmarks.md)")
    scenario.add_argument(
        "--slow-clients", type=int, default=1000, help="isolation: slow requests held [1000]"
    )
    scenario.add_argument(
        "--slow-delay", type=float, default=2.0, help="isolation: the slow upstream's delay [2]"
    )
    scenario.add_argument("--sse-streams", type=int, default=5000, help="SSE: streams [5000]")
    scenario.add_argument(
        "--sse-duration", type=float, default=20, help="SSE: seconds events are counted [20]"
    )
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
    uvicorn = servers.UvicornSettings()
    asgi_gunicorn = replace(gunicorn, worker_class=ASGI_WORKER_CLASS)
    shells = {WSGI_GUNICORN: gunicorn, ASGI_GUNICORN: asgi_gunicorn, UVICORN: uvicorn,
              BARE_UVICORN: uvicorn}  # fmt: skip
    chosen = selected(targets, args.only)
    use_redis = args.cache == "redis" or (args.cache == "auto" and redis_reachable())
    if args.cache == "redis" and not redis_reachable():
        raise RuntimeError(f"no Redis at {REDIS_ADDRESS[0]}:{REDIS_ADDRESS[1]}")
    cache_prefix = f"gwbench-{uuid.uuid4().hex[:8]}"
    measurements: dict[str, list[dict]] = {t.key: [] for t in chosen}
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
            for target in with_servers(targets, chosen):
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
                    ports[target.key], leaders[target.key] = start_server(
                        processes, target, target_env, shells, tree.root, server_core
                    )
                elif target.server:
                    ports[target.key] = ports[target.server]
                    leaders[target.key] = leaders[target.server]
            say(f"upstream: {upstream.version} on {upstream.url} ({upstream.kind})")
            say(f"gunicorn (every WSGI target): {gunicorn.describe()}")
            if any(t.shell != WSGI_GUNICORN for t in chosen):
                say(f"uvicorn (ASGI gateway, bare ASGI proxy): {uvicorn.describe()}")
                say(f"gunicorn (ASGI under UvicornWorker): {asgi_gunicorn.describe()}")
            say(
                f"gateway cache: {f'Redis db {REDIS_DB}' if use_redis else 'local memory (SQLite poll)'}"
            )
            say(
                f"wrk: -t1 -c{load.connections} -d{load.duration:.0f}s after {load.warmup:.0f}s warm-up; "
                f"wrk on core {wrk_core}, servers on core {server_core}"
            )
            for round_number in range(1, args.rounds + 1):
                for target in round_order(chosen, round_number):
                    say(
                        f"  round {round_number}/{args.rounds}: {target.label} (GET {target.path}) ..."
                    )
                    involved = {key: leaders[key] for key in {"upstream", target.key}}
                    headers = credential_headers(target, credentials[bool(target.baseline_of)])
                    measurements[target.key].append(
                        loadgen.measure(
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
        "uvicorn": uvicorn.describe(),
        "asgi_gunicorn": asgi_gunicorn.describe(),
        "gateway_cache": f"redis db {REDIS_DB}" if use_redis else "locmem",
        "load": {"tool": "wrk", "threads": 1, "connections": load.connections,
                 "duration_s": load.duration, "warmup_s": load.warmup,
                 "wrk_core": wrk_core, "server_core": server_core, "rounds": args.rounds,
                 "response_body_bytes": 1024, "method": "GET"},
        "baseline": baseline_run,
        "targets": {
            t.key: {"label": t.label, "path": t.path, "baseline_of": t.baseline_of,
                    **summarise(measurements[t.key])}
            for t in chosen
        },
    }  # fmt: skip


def with_servers(targets: tuple[Target, ...], chosen: tuple[Target, ...]) -> list[Target]:
    """``chosen`` and the targets whose servers they share, in table order: what must start."""
    keys = {t.key for t in chosen} | {t.server for t in chosen if t.server}
    return [t for t in targets if t.key in keys]


def start_server(
    processes: servers.Processes,
    target: Target,
    env: dict[str, str],
    shells: dict,
    root: Path,
    core: int | None,
) -> tuple[int, int]:
    """The server of a target with a variant, by its shell; (port, process group leader)."""
    venv_bin = Path(sys.executable).parent
    where = {"venv_bin": venv_bin, "root": root, "core": core, "probe_path": target.path}
    settings = shells[target.shell]
    if target.shell == WSGI_GUNICORN:
        return servers.start_gunicorn(processes, target.key, env, settings, **where)
    if target.shell == ASGI_GUNICORN:
        app = "benchmarks.asgi:application"
        return servers.start_gunicorn(processes, target.key, env, settings, app=app, **where)
    app = (
        "benchmarks.bare_asgi_proxy:app"
        if target.shell == BARE_UVICORN
        else "benchmarks.asgi:application"
    )
    return servers.start_uvicorn(processes, target.key, env, settings, app=app, **where)


def seed(tree: Checkout) -> None:
    """Migrate and seed the database of ``tree.env`` with that checkout's package."""
    command = [sys.executable, "-m", "benchmarks.seed"]
    subprocess.run(command, env=tree.env, cwd=tree.root, check=True, timeout=120)


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


def run_scenarios(args: argparse.Namespace, wrk_core: int | None, server_core: int | None) -> dict:
    """The isolation and SSE scenarios (:mod:`benchmarks.scenarios`), on their own servers."""
    loadgen.wrk_binary()
    options = scenarios.Options(
        clients=args.slow_clients, delay=args.slow_delay, streams=args.sse_streams,
        sse_duration=args.sse_duration, upstream=args.upstream,
    )  # fmt: skip
    # The gateway holds a client and an upstream socket per stream or held request.
    wanted = 2 * max(args.slow_clients, args.sse_streams if args.sse else 0) + 1024
    limit = servers.raise_fd_limit(wanted)
    if limit < wanted:
        say(f"warning: RLIMIT_NOFILE is {limit}, below the {wanted} file descriptors wanted")
    load = loadgen.Load(args.connections, 1, args.duration, args.warmup, wrk_core)
    result: dict = {"fd_limit": limit, "isolation": None, "sse": None}
    say("scenarios")
    with scenarios.stage(REPO, options, wrk_core, server_core) as stage:
        if not args.skip_isolation:
            result["isolation"] = scenarios.run_isolation(stage, load, options, say)
        if args.sse:
            result["sse"] = scenarios.run_sse(stage, options, say)
    return result


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
        "uvicorn": version("uvicorn"),
        "uvicorn-worker": version("uvicorn-worker"),
        "uvloop": version("uvloop"),
        "wrk": first_line(["wrk", "--version"]),
        "commit": first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
    }


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks, stop children
    wrk_core, server_core = cores(args)
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    http = matching = held = None
    try:
        baseline = resolve(args.baseline, REPO) if args.baseline else None
        targets = with_twins(TARGETS, baseline) if baseline else TARGETS
        if not args.skip_http:
            say("HTTP benchmark")
            http = run_http(args, targets, baseline, wrk_core, server_core)
        if not args.skip_isolation or args.sse:
            held = run_scenarios(args, wrk_core, server_core)
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

    checks = verdicts(http, matching, held)
    result = {
        "started": started.isoformat(timespec="seconds"),
        "environment": environment(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "http": http,
        "route_match": matching,
        "scenarios": held,
        "checks": checks,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print_results(result, targets, server_core)
    say(f"\nresults written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
