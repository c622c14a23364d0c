"""Issue #5: requests keep flowing at full rate while Consul instances change.

    .venv/bin/python -m benchmarks.flapping [--duration 20] [--connections 16]

Two nginx instances serve the benchmark's 1 KiB body, each answering with its own ``X-Upstream``
header (``a``, ``b``). The Consul HTTP API double runs in this process with the service ``flap``:
instance A stays passing the whole run, instance B flaps once a second (critical, passing, and
every third time out deregistered, then registered again). One gunicorn gateway (the benchmark's
``gateway`` variant) serves a static open route ``/gw`` to A and an open route ``/flap`` to the
Consul service. wrk measures ``/gw/bench``, then ``/flap/bench`` while B flaps, counting every
response by status (``wrk_statuses.lua``). Before wrk, a short probe loop of plain requests
records which instance answered, and whether B was in Consul at the time.

A stays passing, so the gateway's policy defines no 5xx here: any response that is not 2xx, or a
socket error, is a FAIL. The other check is "flapping req/s >= 90% of static". Pinned like
``benchmarks/run.py`` (wrk and this process on one core, every server on the other); results go to
``benchmarks/results/flapping.json``. Exits non-zero only when the harness fails. See
docs/benchmarks.md, "Instances flapping (Consul)".
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import loadgen, run, servers
from benchmarks.payload import BODY, UPSTREAM_PATH
from benchmarks.verdicts import verdict_lines
from django_gateway.testing.consul import ConsulDouble

REPO = run.REPO
RESULTS = REPO / "benchmarks" / "results" / "flapping.json"
SERVICE = "flap"
STABLE, FLAPPING = "flap-a", "flap-b"
STATIC_PATH = "/gw" + UPSTREAM_PATH
FLAP_PATH = "/flap" + UPSTREAM_PATH
FLIP_INTERVAL = 1.0
PROBES = 200
PROBE_PAUSE = 0.02  # seconds between probes: 200 of them span several flips
MIN_FLAPPING_VS_STATIC = 0.90
say = run.say


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="django-gateway under Consul instances flapping every second (docs/benchmarks.md)"
    )
    parser.add_argument("--duration", type=float, default=20, help="seconds per measurement [20]")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up each [2]")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections [16]")
    parser.add_argument(
        "--flip-interval",
        type=float,
        default=FLIP_INTERVAL,
        help=f"seconds between two flips of B [{FLIP_INTERVAL:g}]",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="static and flapping this often, interleaved [1]"
    )
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes [1]")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads per worker [16]")
    parser.add_argument("--wrk-core", type=int, help="core for wrk [the first available]")
    parser.add_argument(
        "--server-core", type=int, help="core for every server [the second available]"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help=f"JSON results [{RESULTS.relative_to(REPO)}]"
    )
    return parser.parse_args()


# --- B's flapping ---------------------------------------------------------------------------------


class Flapper(threading.Thread):
    """Takes B out of Consul and back every ``interval`` seconds: out as ``critical`` twice, then
    deregistered the third time; back as ``passing`` (or registered again, after a deregister)."""

    def __init__(self, double: ConsulDouble, port: int, interval: float = FLIP_INTERVAL) -> None:
        super().__init__(name="flapper", daemon=True)
        self.catalog = double.catalog
        self.port = port
        self.interval = interval
        self.halt = threading.Event()
        self.in_consul = True  # registered and passing: the gateway may route to B
        self.flips: list[tuple[float, str]] = []  # (time.monotonic(), action)
        self.errors: list[str] = []

    def run(self) -> None:
        outs, last_out = 0, ""
        next_at = time.monotonic() + self.interval
        while not self.halt.wait(max(next_at - time.monotonic(), 0)):
            next_at += self.interval
            try:
                if self.in_consul:
                    outs += 1
                    action = "deregister" if outs % 3 == 0 else "critical"
                    if action == "deregister":
                        self.catalog.deregister(FLAPPING)
                    else:
                        self.catalog.set_status(FLAPPING, "critical")
                    last_out = action
                elif last_out == "deregister":
                    action = "register"
                    register_b(self.catalog, self.port)
                else:
                    action = "passing"
                    self.catalog.set_status(FLAPPING, "passing")
            except Exception as exc:  # a flip that failed is reported, not applied
                self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            self.in_consul = not self.in_consul
            self.flips.append((time.monotonic(), action))

    def stop(self) -> None:
        """Stop flipping and leave B registered and passing, for the next round."""
        self.halt.set()
        self.join(timeout=5)
        register_b(self.catalog, self.port)
        self.in_consul = True

    def actions(self, start: float = 0.0, end: float = float("inf")) -> dict[str, int]:
        return dict(Counter(action for at, action in self.flips if start <= at <= end))


def register_b(catalog, port: int) -> None:  # type: ignore[no-untyped-def]
    catalog.register(SERVICE, FLAPPING, address=servers.LOOPBACK, port=port, status="passing")


def probe(port: int, flapper: Flapper, count: int = PROBES) -> dict:
    """``count`` GETs on one keep-alive connection: which instance answered, with B in Consul or
    out of it when the request was sent (the gateway follows Consul within about a second)."""
    answered: dict[str, Counter[str]] = {"b_in_consul": Counter(), "b_out_of_consul": Counter()}
    statuses: Counter[str] = Counter()
    conn: http.client.HTTPConnection | None = None
    for _ in range(count):
        state = "b_in_consul" if flapper.in_consul else "b_out_of_consul"
        if conn is None:
            conn = http.client.HTTPConnection(servers.LOOPBACK, port, timeout=5)
        try:
            conn.request("GET", FLAP_PATH)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            statuses[f"error: {type(exc).__name__}"] += 1
            conn.close()
            conn = None
            continue
        statuses[str(response.status)] += 1
        if response.status == 200 and body == BODY:
            answered[state][response.getheader("X-Upstream") or "-"] += 1
        if response.will_close:
            conn.close()
            conn = None
        time.sleep(PROBE_PAUSE)
    if conn is not None:
        conn.close()
    return {"statuses": dict(statuses), **{k: dict(v) for k, v in answered.items()}}


# --- measuring ------------------------------------------------------------------------------------


def measure(port: int, path: str, load: loadgen.Load, leaders: dict[str, int]) -> dict:
    """Warm up, then measure with every response counted, and the servers' CPU time."""
    warmup = loadgen.run_wrk_counting(port, path, load, load.warmup) if load.warmup > 0 else None
    cpu_before = {key: servers.group_cpu_seconds(pid) for key, pid in leaders.items()}
    started = time.monotonic()
    result = loadgen.run_wrk_counting(port, path, load, load.duration)
    ended = time.monotonic()
    cpu = sum(servers.group_cpu_seconds(pid) - cpu_before[k] for k, pid in leaders.items())
    elapsed = max(ended - started, 1e-9)
    return {
        **result.as_dict(),
        "warmup_statuses": warmup.statuses if warmup else {},
        "warmup_socket_errors": socket_errors(warmup.measurement.as_dict()) if warmup else 0,
        "cpu_us_per_request": round(cpu / max(result.measurement.requests, 1) * 1e6, 1),
        "core_share": round(cpu / elapsed, 3),
        "window": (started, ended),
    }


def socket_errors(measurement: dict) -> int:
    detail = measurement["error_detail"]
    return sum(count for kind, count in detail.items() if kind != "status")


def summarise(rounds: list[dict]) -> dict:
    def median(name: str) -> float:
        return round(statistics.median(m[name] for m in rounds), 3)

    statuses: Counter[str] = Counter()
    upstreams: Counter[str] = Counter()
    for m in rounds:
        statuses.update(m["statuses"])
        upstreams.update(m["upstreams"])
    return {
        "rps": median("rps"),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "cpu_us_per_request": median("cpu_us_per_request"),
        "core_share": median("core_share"),
        "requests": sum(m["requests"] for m in rounds),
        "statuses": dict(sorted(statuses.items())),
        "upstreams": dict(sorted(upstreams.items())),
        "socket_errors": sum(socket_errors(m) for m in rounds),
        "rounds": [{k: v for k, v in m.items() if k != "window"} for m in rounds],
    }


def run_benchmark(args: argparse.Namespace, wrk_core: int | None, server_core: int | None) -> dict:
    loadgen.wrk_binary()  # fail early, with the install hint
    load = loadgen.Load(args.connections, 1, args.duration, args.warmup, wrk_core)
    gunicorn = servers.GunicornSettings(workers=args.workers, threads=args.threads)
    use_redis = run.redis_reachable()
    cache_prefix = f"gwbench-{uuid.uuid4().hex[:8]}"
    static: list[dict] = []
    flapping: list[dict] = []
    flips: list[dict] = []
    flip_errors: list[str] = []
    probed: dict = {}

    with tempfile.TemporaryDirectory(prefix="gateway-flapping-") as workdir_name:
        workdir = Path(workdir_name)
        processes = servers.Processes(workdir)
        double = ConsulDouble()
        flapper: Flapper | None = None
        try:
            upstreams = {}
            for label in ("a", "b"):
                (workdir / label).mkdir()
                upstreams[label] = servers.start_upstream(
                    processes, workdir / label, server_core, sys.executable, REPO, "nginx",
                    name=f"upstream-{label}", label=label,
                )  # fmt: skip
            double.start()
            double.catalog.register(
                SERVICE, STABLE, address=servers.LOOPBACK, port=upstreams["a"].port
            )
            register_b(double.catalog, upstreams["b"].port)
            environ = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_HTTP_")}
            redis_url = f"redis://{run.REDIS_ADDRESS[0]}:{run.REDIS_ADDRESS[1]}/{run.REDIS_DB}"
            env = {
                **environ,
                "PYTHONPATH": str(REPO),
                "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
                "BENCH_VARIANT": "gateway",
                "BENCH_UPSTREAM_URL": upstreams["a"].url,
                "BENCH_CONSUL_ADDRESS": double.address,
                "BENCH_DB_PATH": str(workdir / "bench.sqlite3"),
                "BENCH_REDIS_URL": redis_url if use_redis else "",
                "BENCH_CACHE_PREFIX": cache_prefix,
                "BENCH_CREDENTIALS_PATH": str(workdir / "credentials.json"),
            }
            seed = [sys.executable, "-m", "benchmarks.seed"]
            subprocess.run(seed, env=env, cwd=REPO, check=True, timeout=120)
            port, leader = servers.start_gunicorn(
                processes, "gateway", env, gunicorn,
                venv_bin=Path(sys.executable).parent, root=REPO, core=server_core,
                probe_path=STATIC_PATH,
            )  # fmt: skip
            wait_for_flap_route(port)
            leaders = {"gateway": leader, **{f"upstream-{k}": u.pid for k, u in upstreams.items()}}
            say(
                f"upstreams: {upstreams['a'].version}, A on {upstreams['a'].url}, B on {upstreams['b'].url}"
            )
            say(
                f"Consul double on {double.address}: service {SERVICE!r}, "
                f"A stable, B flapping every {args.flip_interval:g}s"
            )
            say(f"gunicorn: {gunicorn.describe()}")
            say(f"gateway cache: {f'Redis db {run.REDIS_DB}' if use_redis else 'local memory'}")
            say(
                f"wrk: -t1 -c{load.connections} -d{load.duration:.0f}s after {load.warmup:.0f}s warm-up; "
                f"wrk and the Consul double on core {wrk_core}, servers on core {server_core}"
            )  # fmt: skip
            for round_number in range(1, args.rounds + 1):
                say(f"  round {round_number}/{args.rounds}: static route (GET {STATIC_PATH}) ...")
                static.append(measure(port, STATIC_PATH, load, leaders))
                flapper = Flapper(double, upstreams["b"].port, args.flip_interval)
                flapper.start()
                if round_number == 1:
                    say(f"  probing GET {FLAP_PATH} x {PROBES} while B flaps ...")
                    probed = probe(port, flapper)
                say(f"  round {round_number}/{args.rounds}: flapping (GET {FLAP_PATH}) ...")
                flapping.append(measure(port, FLAP_PATH, load, leaders))
                flapper.stop()
                start, end = flapping[-1]["window"]
                flips.append(
                    {"total": len(flapper.flips), "total_by_action": flapper.actions(),
                     "measured": sum(flapper.actions(start, end).values()),
                     "measured_by_action": flapper.actions(start, end)}
                )  # fmt: skip
                flip_errors += flapper.errors
                flapper = None
        finally:
            if flapper is not None:
                flapper.halt.set()
            processes.stop_all()
            double.stop()
            if use_redis:
                try:
                    run.clear_redis_prefix(cache_prefix)
                except Exception as exc:  # cleanup must not hide the real outcome
                    say(f"warning: could not remove Redis keys {cache_prefix}:*: {exc}")

    by_action: Counter[str] = Counter()
    for f in flips:
        by_action.update(f["total_by_action"])
    return {
        "upstream": upstreams["a"].version,
        "gunicorn": gunicorn.describe(),
        "gateway_cache": f"redis db {run.REDIS_DB}" if use_redis else "locmem",
        "load": {"tool": "wrk", "threads": 1, "connections": load.connections,
                 "duration_s": load.duration, "warmup_s": load.warmup, "rounds": args.rounds,
                 "wrk_core": wrk_core, "server_core": server_core},
        "static": {"path": STATIC_PATH, **summarise(static)},
        "flapping": {"path": FLAP_PATH, **summarise(flapping)},
        "flips": {
            "interval_s": args.flip_interval,
            "applied": sum(f["total"] for f in flips),
            "applied_while_measuring": sum(f["measured"] for f in flips),
            "by_action": dict(sorted(by_action.items())),
            "failed": flip_errors,
        },
        "probe": probed,
    }  # fmt: skip


def wait_for_flap_route(port: int, timeout: float = 15.0) -> None:
    """The first request for a Consul service waits for the gateway's first answer from Consul."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            status, body = servers.http_get(port, FLAP_PATH)
        except OSError as exc:
            last = str(exc)
        else:
            if status == 200 and body == BODY:
                return
            last = f"status {status}"
        time.sleep(0.2)
    raise RuntimeError(f"GET {FLAP_PATH} never answered 200 within {timeout:.0f}s ({last})")


# --- reporting ------------------------------------------------------------------------------------


def non_2xx(statuses: dict[str, int]) -> dict[str, int]:
    return {s: n for s, n in statuses.items() if not s.startswith("2")}


def counts(values: dict[str, int]) -> str:
    return ", ".join(f"{key} x {value:,}" for key, value in values.items()) or "none"


def table(result: dict) -> str:
    lines = [
        "| run | req/s | p50 (ms) | p99 (ms) | server CPU µs/req | server core share "
        "| statuses | socket errors | answered by |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for key, label in (("static", "static route"), ("flapping", "Consul route, B flapping")):
        row = result[key]
        lines.append(
            f"| {label} (`GET {row['path']}`) | {row['rps']:,.0f} | {row['p50_ms']:.2f} "
            f"| {row['p99_ms']:.2f} | {row['cpu_us_per_request']:,.0f} | {row['core_share']:.0%} "
            f"| {counts(row['statuses'])} | {row['socket_errors']} "
            f"| {counts(row['upstreams'])} |"
        )
    return "\n".join(lines)


def verdicts(result: dict) -> list[dict]:
    flap, static, probed = result["flapping"], result["static"], result["probe"]
    # Every response while B flapped: the probe, each warm-up and each measurement.
    everything: Counter[str] = Counter(flap["statuses"])
    everything.update(probed.get("statuses", {}))
    socket = flap["socket_errors"]
    for m in flap["rounds"]:
        everything.update(m["warmup_statuses"])
        socket += m["warmup_socket_errors"]
    bad = non_2xx(dict(everything))
    answered: Counter[str] = Counter(flap["upstreams"])
    answered.update(probed.get("b_in_consul", {}))
    answered.update(probed.get("b_out_of_consul", {}))
    flips = result["flips"]
    total = sum(everything.values())
    ratio = flap["rps"] / static["rps"]
    return [
        {
            "target": "no 5xx while instances flap (A stays passing: any non-2xx is a failure)",
            "passed": not bad and socket == 0 and total > 0,
            "measured": f"{total:,} responses: {counts(dict(sorted(everything.items())))}; "
            f"non-2xx {counts(bad)}; socket errors {socket}",
        },
        {
            "target": f"flapping req/s >= {MIN_FLAPPING_VS_STATIC:.0%} of static",
            "passed": ratio >= MIN_FLAPPING_VS_STATIC,
            "measured": f"{ratio:.0%} ({flap['rps']:,.0f} vs {static['rps']:,.0f} req/s)",
        },
        {
            "target": "B's flaps reached the gateway (flips applied, both instances answered /flap)",
            "passed": flips["applied"] > 0 and not flips["failed"]
            and answered["a"] > 0 and answered["b"] > 0,
            "measured": f"{flips['applied']} flips, {len(flips['failed'])} failed; "
            f"A {answered['a']:,}, B {answered['b']:,}",
        },
    ]  # fmt: skip


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks, stop children
    wrk_core, server_core = run.cores(args)
    if wrk_core is not None:  # the Consul double and the flapper stay off the servers' core
        os.sched_setaffinity(0, {wrk_core})
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    say("flapping benchmark")
    try:
        result = run_benchmark(args, wrk_core, server_core)
    except loadgen.WrkMissing as exc:
        say(f"error: {exc}")
        return 2
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        say(f"error: the benchmark harness failed: {exc}")
        return 1
    checks = verdicts(result)
    output = {
        "started": started.isoformat(timespec="seconds"),
        "environment": run.environment(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        **result,
        "flapping_vs_static": round(result["flapping"]["rps"] / result["static"]["rps"], 3),
        "checks": checks,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=2) + "\n")

    env = output["environment"]
    load = result["load"]
    flips, probed = result["flips"], result["probe"]
    say()
    say(
        f"{env['cpu']}, {env['cpus']} CPUs, Python {env['python']}, Django {env['django']}, "
        f"gunicorn {env['gunicorn']}, commit {env['commit']}"
    )
    say(
        f"load average before/after: {output['load_average_before']} / {output['load_average_after']}"
    )
    say()
    say(
        f"## Instances flapping: GET, 1 KiB response, {load['connections']} connections, "
        f"{load['duration_s']:.0f}s x {load['rounds']} round(s) each"
    )
    say(f"upstreams {result['upstream']} (A and B); gateway cache {result['gateway_cache']}")
    say(f"gunicorn {result['gunicorn']}")
    say()
    say(table(result))
    say()
    say(f"flapping / static req/s: {output['flapping_vs_static']:.0%}")
    say(
        f"flips applied: {flips['applied']} ({counts(flips['by_action'])}), "
        f"{flips['applied_while_measuring']} of them while wrk measured"
        + (f"; {len(flips['failed'])} failed: {flips['failed'][:3]}" if flips["failed"] else "")
    )
    if probed:
        say(
            f"probe, {PROBES} GETs while B flapped: statuses {counts(probed['statuses'])}; "
            f"B in Consul: {counts(probed['b_in_consul'])}; "
            f"B out of Consul: {counts(probed['b_out_of_consul'])}"
        )
    say()
    for line in verdict_lines(checks):
        say(line)
    say(f"\nresults written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
