"""The ASGI shell under many held connections: the isolation and SSE scenarios (issue #11).

**Isolation** (run by default, ``--skip-isolation`` to leave out): one gateway process with a
fast route (``/gw`` → nginx) and a slow one (``/slow`` → :mod:`benchmarks.async_upstream`, which
answers after ``--slow-delay`` seconds). wrk measures the fast route alone; then
:mod:`benchmarks.async_clients` ``hold`` keeps ``--slow-clients`` requests in flight on the slow
route (each client re-issues as its answer arrives) and wrk measures the fast route again. The
ASGI process (uvicorn, one worker) is judged; the WSGI gateway (gunicorn gthread, 2 workers x 64
threads) goes through the same steps for contrast and is reported only.

**SSE** (``--sse``): one ASGI process proxies ``--sse-streams`` event streams (``/sse/events``;
the upstream sends one event per second per stream). :mod:`benchmarks.async_clients` ``sse``
opens them, then counts each stream's events over ``--sse-duration`` seconds, while this process
samples the gateway's resident memory (VmRSS) every half second.

Servers and upstreams run on the server core, as in the HTTP benchmark; the holding and streaming
clients run on wrk's core (their few hundred requests or thousands of events a second cost a few
percent of it). The gateway's cache is local memory (the configuration is polled from SQLite):
these scenarios have no rate limits. Services have no ``max_concurrent_requests`` (unlimited).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from . import loadgen, servers
from .payload import UPSTREAM_PATH

FAST_PATH = "/gw" + UPSTREAM_PATH
SLOW_PATH = "/slow" + UPSTREAM_PATH
SSE_PATH = "/sse/events"
ASGI_APP = "benchmarks.asgi:application"
#: The WSGI contrast, as the issue's table has it: gunicorn gthread, 2 workers x 64 threads.
WSGI_CONTRAST = servers.GunicornSettings(workers=2, threads=64)
RSS_EVERY = 0.5  # seconds between two samples of the gateway's memory


@dataclass(frozen=True)
class Options:
    clients: int = 1000
    delay: float = 2.0
    streams: int = 5000
    sse_duration: float = 20.0
    upstream: str = "auto"  # nginx, or the Python stand-in


@dataclass(frozen=True)
class Stage:
    """What every scenario shares: the upstreams, the seeded database, the environment."""

    repo: Path
    workdir: Path
    env: dict[str, str]
    upstream: servers.Upstream  # nginx (or the stand-in) behind /gw
    async_upstream_pid: int  # benchmarks.async_upstream behind /slow and /sse
    wrk_core: int | None
    server_core: int | None


@contextmanager
def stage(
    repo: Path, options: Options, wrk_core: int | None, server_core: int | None
) -> Iterator[Stage]:
    with tempfile.TemporaryDirectory(prefix="gateway-scenarios-") as name:
        workdir = Path(name)
        processes = servers.Processes(workdir)
        try:
            upstream = servers.start_upstream(
                processes, workdir, server_core, sys.executable, repo, options.upstream
            )
            port = servers.free_port()
            command = [sys.executable, "-m", "benchmarks.async_upstream", "--port", str(port),
                       "--delay", str(options.delay)]  # fmt: skip
            slow = processes.start(
                "async-upstream", servers.pinned(command, server_core), cwd=str(repo)
            )
            _wait_for_port(port, slow, processes)
            env = {
                **os.environ,
                "PYTHONPATH": str(repo),
                "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
                "BENCH_UPSTREAM_URL": upstream.url,
                "BENCH_ASYNC_UPSTREAM_URL": f"http://{servers.LOOPBACK}:{port}",
                "BENCH_DB_PATH": str(workdir / "bench.sqlite3"),
                "BENCH_REDIS_URL": "",  # local-memory cache: nothing here is rate limited
                "BENCH_CREDENTIALS_PATH": str(workdir / "credentials.json"),
            }
            seed = [sys.executable, "-m", "benchmarks.seed"]
            subprocess.run(seed, env=env, cwd=repo, check=True, timeout=120)
            yield Stage(repo, workdir, env, upstream, slow.pid, wrk_core, server_core)
        finally:
            processes.stop_all()


def _wait_for_port(port: int, proc: subprocess.Popen, processes: servers.Processes) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with socket.create_connection((servers.LOOPBACK, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the async upstream did not start:\n{processes.log_tail('async-upstream')}")


def _start_gateway(
    stage: Stage, processes: servers.Processes, name: str, shell: str
) -> tuple[int, int, str]:
    """(port, leader pid, settings described) of a gateway serving the scenario's routes."""
    where = {"venv_bin": Path(sys.executable).parent, "root": stage.repo,
             "core": stage.server_core, "probe_path": FAST_PATH}  # fmt: skip
    if shell == "asgi":
        settings = servers.UvicornSettings()
        env = {**stage.env, "BENCH_VARIANT": "asgi"}
        port, pid = servers.start_uvicorn(processes, name, env, settings, app=ASGI_APP, **where)
        return port, pid, f"uvicorn {settings.describe()}"
    env = {**stage.env, "BENCH_VARIANT": "gateway"}
    port, pid = servers.start_gunicorn(processes, name, env, WSGI_CONTRAST, **where)
    return port, pid, f"gunicorn {WSGI_CONTRAST.describe()}"


def _client(
    stage: Stage, processes: servers.Processes, name: str, arguments: list[str]
) -> subprocess.Popen:
    command = [sys.executable, "-m", "benchmarks.async_clients", *arguments]
    return processes.start(name, servers.pinned(command, stage.wrk_core), cwd=str(stage.repo))


def _line(processes: servers.Processes, name: str, marker: str) -> dict | None:
    path = processes.log_dir / f"{name}.log"
    if not path.exists():
        return None
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(marker + " "):
            return json.loads(line[len(marker) + 1 :])
    return None


def _wait_line(
    processes: servers.Processes, name: str, proc: subprocess.Popen, marker: str, timeout: float
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _line(processes, name, marker)
        if found is not None:
            return found
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{name} printed no {marker} line:\n{processes.log_tail(name)}")


# --- isolation ------------------------------------------------------------------------------------


def isolation(stage: Stage, shell: str, load: loadgen.Load, options: Options) -> dict:
    """The fast route alone, then with ``options.clients`` slow requests held, on one shell."""
    processes = servers.Processes(stage.workdir)  # this shell's, stopped before the next one
    try:
        port, pid, described = _start_gateway(stage, processes, f"isolation-{shell}", shell)
        leaders = {"gateway": pid, "upstream": stage.upstream.pid}
        alone = loadgen.measure(port, FAST_PATH, load, leaders, stage.server_core)
        name = f"hold-{shell}"
        holder = _client(stage, processes, name, [
            "hold", "--port", str(port), "--path", SLOW_PATH, "--clients", str(options.clients),
            "--spread", str(options.delay),
        ])  # fmt: skip
        ready = _wait_line(processes, name, holder, "BENCH_READY", timeout=60)
        # Every first request sent (over one delay), then answered and sent again: steady state.
        time.sleep(2 * options.delay + 0.5)
        if load.warmup > 0:
            loadgen.run_wrk(port, FAST_PATH, load, load.warmup)
        holder.send_signal(signal.SIGUSR1)  # count the slow answers of the measurement only
        leaders["slow upstream"] = stage.async_upstream_pid
        loaded = loadgen.measure(
            port, FAST_PATH, replace(load, warmup=0), leaders, stage.server_core
        )
        holder.send_signal(signal.SIGTERM)
        held = _wait_line(processes, name, holder, "BENCH_JSON", timeout=30)
    finally:
        processes.stop_all(grace=3)  # a gthread worker would drain its held requests first
    # Under load the servers also answered the slow requests: their CPU per request served.
    served = loaded["requests"] + held["responses"]
    loaded["cpu_us_per_request_served"] = round(
        sum(loaded["cpu_s"].values()) / max(served, 1) * 1e6, 1
    )
    return {"server": described, "alone": alone, "loaded": loaded,
            "holders": {**held, "connect_seconds": ready["seconds"]}}  # fmt: skip


def run_isolation(stage: Stage, load: loadgen.Load, options: Options, say) -> dict:  # type: ignore[no-untyped-def]
    result = {"clients": options.clients, "delay_s": options.delay,
              "holder_core": stage.wrk_core, "fast_path": FAST_PATH, "slow_path": SLOW_PATH}  # fmt: skip
    for shell in ("asgi", "wsgi"):
        say(f"  isolation, {shell.upper()} gateway: fast route alone, then with "
            f"{options.clients:,} slow requests held ...")  # fmt: skip
        result[shell] = isolation(stage, shell, load, options)
    return result


# --- SSE ------------------------------------------------------------------------------------------


def run_sse(stage: Stage, options: Options, say) -> dict:  # type: ignore[no-untyped-def]
    say(f"  SSE: {options.streams:,} streams through one ASGI process for "
        f"{options.sse_duration:.0f}s ...")  # fmt: skip
    processes = servers.Processes(stage.workdir)
    try:
        port, pid, described = _start_gateway(stage, processes, "sse-asgi", "asgi")
        time.sleep(1)  # the probe loaded the snapshot; let the first configuration poll pass
        idle = servers.group_rss_bytes(pid)
        client = _client(stage, processes, "sse-clients", [
            "sse", "--port", str(port), "--path", SSE_PATH, "--streams", str(options.streams),
            "--duration", str(options.sse_duration),
        ])  # fmt: skip
        ready = _wait_line(processes, "sse-clients", client, "BENCH_READY", timeout=120)
        opened = peak = servers.group_rss_bytes(pid)
        cpu_before = servers.group_cpu_seconds(pid)
        deadline = time.monotonic() + options.sse_duration + 30
        while (counted := _line(processes, "sse-clients", "BENCH_JSON")) is None:
            if client.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the SSE clients gave no result:\n{processes.log_tail('sse-clients')}"
                )
            peak = max(peak, servers.group_rss_bytes(pid))
            time.sleep(RSS_EVERY)
        cpu = servers.group_cpu_seconds(pid) - cpu_before
        end = servers.group_rss_bytes(pid)
        peak = max(peak, end)
        client.wait(timeout=30)
        time.sleep(2)  # the gateway notices 5,000 closed clients and closes their upstreams
        closed = servers.group_rss_bytes(pid)
    finally:
        processes.stop_all()
    mb = 1e6  # decimal megabytes, as the limit is stated
    return {
        "server": described, "streams": options.streams, "path": SSE_PATH,
        "client_core": stage.wrk_core, "connect_seconds": ready["seconds"],
        "rss_mb": {"idle": round(idle / mb, 1), "streams_open": round(opened / mb, 1),
                   "peak": round(peak / mb, 1), "end": round(end / mb, 1),
                   "after_close": round(closed / mb, 1)},
        "rss_growth_mb": round((peak - idle) / mb, 1),
        "cpu_us_per_event": round(cpu / max(counted["events"]["total"], 1) * 1e6, 1),
        "clients": counted,
    }  # fmt: skip
