"""The processes a benchmark run starts, each pinned to the server core and each stopped by pid.

Servers: nginx (or a Python stand-in) as the upstream, gunicorn for the WSGI rows and for ASGI
under ``uvicorn_worker.UvicornWorker``, uvicorn for the ASGI rows and the bare ASGI proxy.

:class:`Processes` starts every child in its own session (so a gunicorn master and its workers form
one process group), remembers it, and :meth:`Processes.stop_all` sends that group SIGTERM, then
SIGKILL after a grace period. :func:`nginx_config` writes a self-contained nginx configuration:
every path under a temporary directory, no daemon, no master process, access log off.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .payload import BODY, UPSTREAM_PATH

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def pinned(command: list[str], core: int | None) -> list[str]:
    if core is None:
        return command
    return ["taskset", "-c", str(core), *command]


@dataclass
class Processes:
    """Children of this run; ``stop_all`` runs from a ``finally`` whatever happened."""

    log_dir: Path
    children: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(
        self,
        name: str,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        try:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            log.close()
        self.children.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self, grace: float = 10.0) -> None:
        for _, proc in reversed(self.children):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)  # the leader and whatever it still runs
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        self.children.clear()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is not None:
        return  # reaped: its group id is no longer ours to signal
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the group this child leads (start_new_session)


# --- CPU accounting -------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(leader: int) -> float:
    """User + system CPU of every live process in ``leader``'s process group (all its threads)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == leader:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def group_rss_bytes(leader: int) -> int:
    """Resident memory (VmRSS) of every live process in ``leader``'s process group."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                if int(stat.read().rpartition(")")[2].split()[2]) != leader:
                    continue
            with open(f"/proc/{entry.name}/status") as status:
                rss = next((ln for ln in status if ln.startswith("VmRSS:")), "VmRSS: 0 kB")
        except OSError:
            continue
        total += int(rss.split()[1]) * 1024
    return total


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (children inherit it); returns
    the new soft limit, which the hard limit may keep below ``wanted``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def core_busy_seconds(core: int | None) -> tuple[float, float]:
    """(busy, elapsed) seconds of one core so far, or of all cores when ``core`` is None."""
    name = "cpu" if core is None else f"cpu{core}"
    with open("/proc/stat") as stat:
        for line in stat:
            fields = line.split()
            if fields[0] == name:
                ticks = [int(value) for value in fields[1:9]]
                idle = ticks[3] + ticks[4]  # idle + iowait
                return (sum(ticks) - idle) / _TICK, sum(ticks) / _TICK
    raise RuntimeError(f"no {name} line in /proc/stat")


def wait_until_serving(
    proc: subprocess.Popen,
    port: int,
    path: str,
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
) -> None:
    """Poll until ``path`` answers 200 with the payload; raise with a reason if it never does."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited with status {proc.returncode}")
        try:
            status, body = http_get(port, path, headers)
        except OSError as exc:
            last = str(exc)
            time.sleep(0.1)
            continue
        if status == 200 and body == BODY:
            return
        raise RuntimeError(
            f"GET {path} answered {status} with {len(body)} bytes, not the 1 KiB payload"
        )
    raise RuntimeError(f"GET {path} did not answer within {timeout:.0f}s ({last})")


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- the upstream ---------------------------------------------------------------------------------


def nginx_config(directory: Path, port: int, label: str | None = None) -> Path:
    """``label``: answer with ``X-Upstream: <label>`` too, to tell instances apart."""
    body = BODY.decode("ascii").replace("\n", "\\n")
    add_header = f"        add_header X-Upstream {label};\n" if label else ""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {directory / (kind + '_temp')};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = f"""\
daemon off;
master_process off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp_paths}
    keepalive_timeout 65;
    keepalive_requests 10000000;
    server {{
        listen {LOOPBACK}:{port} backlog=2048;
        default_type text/plain;
{add_header}        location = {UPSTREAM_PATH} {{ return 200 "{body}"; }}
        location / {{ return 404; }}
    }}
}}
"""
    path = directory / "nginx.conf"
    path.write_text(config)
    return path


@dataclass(frozen=True)
class Upstream:
    kind: str  # "nginx" or "python"
    version: str
    port: int
    pid: int  # leads its process group

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def start_upstream(
    processes: Processes,
    workdir: Path,
    core: int | None,
    python: str,
    repo: Path,
    want: str,
    *,
    name: str = "upstream",
    label: str | None = None,
) -> Upstream:
    """nginx when installed (or required with ``want="nginx"``), else the Python stand-in.

    ``name`` names its log (several upstreams need distinct names and work directories);
    ``label`` makes nginx add ``X-Upstream: <label>`` (the Python stand-in ignores it).
    """
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    port = free_port()
    if want != "python" and nginx:
        directory = workdir / "nginx"
        directory.mkdir()
        config = nginx_config(directory, port, label)
        version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        command = [
            nginx,
            "-p",
            str(directory),
            "-c",
            str(config),
            "-e",
            str(directory / "nginx-error.log"),
        ]
        proc = processes.start(name, pinned(command, core))
        kind = "nginx"
    elif want == "nginx":
        raise RuntimeError("nginx is not installed: apt-get install nginx-light (or nginx)")
    else:
        command = [python, "-m", "benchmarks.upstream", "--port", str(port)]
        proc = processes.start(name, pinned(command, core), cwd=str(repo))
        kind, version = "python", "benchmarks/upstream.py (asyncio + httptools)"
    try:
        wait_until_serving(proc, port, UPSTREAM_PATH)
    except RuntimeError as exc:
        raise RuntimeError(
            f"the {kind} upstream did not start: {exc}\n{processes.log_tail(name)}"
        ) from exc
    return Upstream(kind, version, port, proc.pid)


# --- gunicorn -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GunicornSettings:
    workers: int = 1
    worker_class: str = "gthread"
    threads: int = 16
    keep_alive: int = 5
    backlog: int = 2048

    def arguments(self) -> list[str]:
        threads = ["--threads", str(self.threads)] if self.worker_class == "gthread" else []
        return [
            "--workers", str(self.workers),
            "--worker-class", self.worker_class,
            *threads,
            "--keep-alive", str(self.keep_alive),
            "--backlog", str(self.backlog),
            "--log-level", "warning",
            "--no-control-socket",
        ]  # fmt: skip

    def describe(self) -> str:
        return " ".join(self.arguments())


def start_gunicorn(
    processes: Processes,
    name: str,
    env: dict[str, str],
    settings: GunicornSettings,
    *,
    venv_bin: Path,
    root: Path,
    core: int | None,
    probe_path: str,
    app: str = "benchmarks.wsgi:application",
    headers: dict[str, str] | None = None,
) -> tuple[int, int]:
    """Start gunicorn on a free port; returns (port, pid of its process group's leader).

    gunicorn changes to ``root`` and puts it first on ``sys.path``: the repository, or the
    directory holding a ``--baseline`` commit's package (:mod:`benchmarks.baseline`). ``app`` is
    ``benchmarks.asgi:application`` under ``uvicorn_worker.UvicornWorker``.
    """
    port = free_port()
    command = [
        str(venv_bin / "gunicorn"),
        app,
        "--bind", f"{LOOPBACK}:{port}",
        "--chdir", str(root),
        *settings.arguments(),
    ]  # fmt: skip
    proc = processes.start(name, pinned(command, core), env=env, cwd=str(root))
    _wait_for(processes, name, "gunicorn", proc, port, probe_path, headers)
    return port, proc.pid


# --- uvicorn --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UvicornSettings:
    """One uvicorn process, as docs/asgi.md recommends running it (no reload, no supervisor)."""

    loop: str = "uvloop"
    http: str = "httptools"
    keep_alive: int = 75  # wrk's connections stay busy; the isolation holders' too
    backlog: int = 2048

    def arguments(self) -> list[str]:
        return [
            "--workers", "1",
            "--loop", self.loop,
            "--http", self.http,
            "--no-access-log",
            "--no-proxy-headers",  # the gateway's TRUSTED_PROXIES decides (docs/asgi.md)
            "--log-level", "warning",
            "--timeout-keep-alive", str(self.keep_alive),
            "--backlog", str(self.backlog),
        ]  # fmt: skip

    def describe(self) -> str:
        return " ".join(self.arguments())


def start_uvicorn(
    processes: Processes,
    name: str,
    env: dict[str, str],
    settings: UvicornSettings,
    *,
    app: str,
    venv_bin: Path,
    root: Path,
    core: int | None,
    probe_path: str,
    headers: dict[str, str] | None = None,
) -> tuple[int, int]:
    """Start uvicorn serving ``app`` on a free port; returns (port, pid). With one worker uvicorn
    serves in its own process, which leads its process group as gunicorn's master does."""
    port = free_port()
    command = [
        str(venv_bin / "uvicorn"), app, "--host", LOOPBACK, "--port", str(port),
        "--app-dir", str(root), *settings.arguments(),
    ]  # fmt: skip
    proc = processes.start(name, pinned(command, core), env=env, cwd=str(root))
    _wait_for(processes, name, "uvicorn", proc, port, probe_path, headers)
    return port, proc.pid


def _wait_for(
    processes: Processes,
    name: str,
    server: str,
    proc: subprocess.Popen,
    port: int,
    probe_path: str,
    headers: dict[str, str] | None,
) -> None:
    try:
        wait_until_serving(proc, port, probe_path, headers=headers)
    except RuntimeError as exc:
        raise RuntimeError(
            f"{server} for {name} did not start: {exc}\n{processes.log_tail(name)}"
        ) from exc
