"""Real gateway servers (gunicorn for the WSGI shell, uvicorn for the ASGI shell), raw-socket
clients, and route publishing.

Django's test client hands the gateway a ready-made WSGI environ, so it cannot show what a server
lets through (odd ``Transfer-Encoding``, a missing ``Host``) or what ends up on the wire (repeated
headers, hop-by-hop headers, chunked framing). These fixtures put a real server in between:

- ``gunicorn`` (session): one master, one ``gthread`` worker with two threads, serving
  ``tests.wsgi``;
- ``uvicorn`` (session): one uvicorn process (uvloop, httptools) serving ``tests.asgi_app``;
- ``gateway_server`` (function, parametrised ``wsgi``/``asgi``): the one of the two a test runs
  against; every wire test that is not inherently about one server uses it, so the behaviour
  contract is checked in both shells from one set of tests. :data:`only_wsgi` and
  :data:`only_asgi` narrow a test to one shell, and say why in its docstring;
- ``wire`` (function, transactional): creates services and routes *committed* to the database and
  waits until the server under test has picked them up.

Both servers start on a free loopback port, lazily (a run that needs only one starts only one),
and share this process's test database and Redis key prefix through the environment.

The raw client (requests written byte for byte, responses parsed with llhttp) is in ``client.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from django_gateway.models import Route, Service, Target
from django_gateway.testing.upstreams import EchoUpstream, unused_port

from .client import HOST, RawResponse, WireConnection, request, wait_until

ROOT = Path(__file__).resolve().parents[2]
PROBE_PREFIX = "/__wire_probe__"
#: Longest wait for a committed configuration change to show in a server.
SYNC_TIMEOUT = 3.0
SHELLS = ("wsgi", "asgi")
WSGI_APP = "tests.wsgi:application"
#: ``tests.asgi:application`` once ``tests/asgi/`` no longer shadows it (see ``asgi_entry.py``).
ASGI_APP = "tests.asgi_app:application"

#: Run a test under one shell only (the other's server differs there, as its docstring says).
only_wsgi = pytest.mark.parametrize("gateway_server", ["wsgi"], indirect=True)
only_asgi = pytest.mark.parametrize("gateway_server", ["asgi"], indirect=True)


# -- the server processes ----------------------------------------------------------------------


class GatewayServer:
    """A server process serving the test project on a free loopback port.

    Subclasses give the command line; the rest (readiness, stop, log, pids, raw clients) is
    shared. ``shell`` says which of the gateway's shells the server runs: ``wsgi`` or ``asgi``.
    """

    shell: ClassVar[str]
    name: ClassVar[str]

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.shell} on port {self.port}>"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> None:
        self.port = unused_port(HOST)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                response = self.exchange(
                    b"GET /__wire_ready__ HTTP/1.1\r\nHost: wire.test\r\nConnection: close\r\n\r\n",
                    timeout=2.0,
                )
            except OSError:
                time.sleep(0.05)
                continue
            if response.status:
                return
        self.stop()
        raise RuntimeError(f"{self.name} did not start; its log:\n{self.log()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log(self, start: int = 0) -> str:
        """The server's output (stdout and stderr), from byte ``start``."""
        with self.log_path.open("rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    @property
    def master_pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The processes that serve requests."""
        raise NotImplementedError

    @property
    def worker_pid(self) -> int:
        (pid,) = self.worker_pids()
        return pid

    @staticmethod
    def rss(pid: int) -> int:
        """Resident set size of ``pid`` in bytes (``VmRSS``)."""
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {pid}")

    def connect(self, timeout: float = 10.0) -> WireConnection:
        return WireConnection(self.port, timeout)

    def exchange(
        self, raw: bytes, *, until_eof: bool = False, timeout: float = 10.0
    ) -> RawResponse:
        """Send ``raw`` on a new connection and read one response."""
        with self.connect(timeout) as conn:
            conn.send(raw)
            return conn.read_response(until_eof=until_eof)

    def get(self, target: str, *headers: str, host: str = "wire.test") -> RawResponse:
        return self.exchange(
            request(f"GET {target} HTTP/1.1", f"Host: {host}", *headers, "Connection: close")
        )


class GunicornServer(GatewayServer):
    """``gunicorn tests.wsgi:application``: a master and one ``gthread`` worker (two threads)."""

    shell = "wsgi"
    name = "gunicorn"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            WSGI_APP,
            f"--bind={HOST}:{self.port}",
            "--worker-class=gthread",
            "--workers=1",
            "--threads=2",
            "--keep-alive=10",
            "--timeout=60",
            "--graceful-timeout=3",
            "--no-control-socket",
            # The gateway alone decides whom to believe (TRUSTED_PROXIES); by default gunicorn
            # believes X-Forwarded-Proto from 127.0.0.1 and turns the scheme into https.
            "--forwarded-allow-ips=",
            "--log-level=warning",
            "--error-logfile=-",
        ]

    def worker_pids(self) -> list[int]:
        """The master's child processes, from ``/proc`` (no psutil)."""
        return child_pids(self.master_pid)


class UvicornServer(GatewayServer):
    """``uvicorn tests.asgi_app:application`` with one worker: the process itself serves (uvicorn
    forks no child for ``--workers 1``)."""

    shell = "asgi"
    name = "uvicorn"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            ASGI_APP,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--ws",
            "websockets",
            "--timeout-keep-alive",
            "10",
            "--no-access-log",
            # As for gunicorn: by default uvicorn replaces the client address and scheme with
            # X-Forwarded-For/-Proto from 127.0.0.1, before the gateway (and TRUSTED_PROXIES).
            "--no-proxy-headers",
            "--log-level",
            "warning",
        ]

    def worker_pids(self) -> list[int]:
        return child_pids(self.master_pid) or [self.master_pid]


def child_pids(parent: int) -> list[int]:
    """``parent``'s child processes, from ``/proc`` (no psutil)."""
    pids: set[int] = set()
    for children in Path(f"/proc/{parent}/task").glob("*/children"):
        try:
            pids.update(int(pid) for pid in children.read_text().split())
        except OSError:
            continue
    if not pids:  # kernels without CONFIG_PROC_CHILDREN: scan parent ids
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                pids.add(int(stat.parent.name))
    return sorted(pids)


SERVER_CLASSES: dict[str, type[GatewayServer]] = {"wsgi": GunicornServer, "asgi": UvicornServer}


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server_env(django_db_setup: Any) -> dict[str, str]:
    """The environment every server runs in: this process's test database and Redis prefix."""
    from django.db import connection

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        GATEWAY_TEST_RUN_ID=os.environ["GATEWAY_TEST_RUN_ID"],  # set by tests/settings.py
        GATEWAY_TEST_DB=os.environ.get("GATEWAY_TEST_DB", "sqlite"),
        GATEWAY_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    return env


def _running(
    cls: type[GatewayServer], env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    server = cls(env, tmp_path_factory.mktemp(cls.name) / f"{cls.name}.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gunicorn(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    """gunicorn serving the test project (the WSGI shell) from the database pytest-django set up."""
    yield from _running(GunicornServer, server_env, tmp_path_factory)


@pytest.fixture(scope="session")
def uvicorn(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    """uvicorn serving the test project (the ASGI shell) from the same database and Redis."""
    yield from _running(UvicornServer, server_env, tmp_path_factory)


SERVER_FIXTURES = {"wsgi": "gunicorn", "asgi": "uvicorn"}
_LOG_START = pytest.StashKey[tuple[GatewayServer, int]]()


@pytest.fixture(params=SHELLS)
def gateway_server(request: pytest.FixtureRequest) -> GatewayServer:
    """The server of the shell under test; a failing test's report shows what it logged."""
    server: GatewayServer = request.getfixturevalue(SERVER_FIXTURES[request.param])
    request.node.stash[_LOG_START] = (server, server.log_size())
    return server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed and _LOG_START in item.stash:
        server, start = item.stash[_LOG_START]
        logged = server.log(start).strip()
        if logged:
            report.sections.append((f"{server.name} log during the test", logged[-20_000:]))
    return report


@pytest.fixture(scope="session")
def probe_upstream() -> Iterator[EchoUpstream]:
    """The upstream behind the throw-away routes that tell when a server has the new config."""
    with EchoUpstream() as server:
        yield server


class WireConfig:
    """Creates committed configuration and waits until the server under test serves it."""

    def __init__(self, server: GatewayServer, probe: EchoUpstream) -> None:
        self.server = server
        self.probe = probe

    def service(self, *upstreams: Any, name: str | None = None, **fields: Any) -> Service:
        service = Service.objects.create(name=name or f"svc-{uuid.uuid4().hex[:8]}", **fields)
        for upstream in upstreams:
            Target.objects.create(service=service, host=upstream.host, port=upstream.port)
        return service

    def route(
        self,
        upstream: Any,
        *,
        sync: bool = True,
        service: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Route:
        """A route to ``upstream`` (a server, or a :class:`Service`), ``/api`` by default."""
        if not isinstance(upstream, Service):
            upstream = self.service(upstream, **(service or {}))
        fields.setdefault("paths", ["/api"])
        fields.setdefault("name", f"route-{uuid.uuid4().hex[:8]}")
        route = Route(service=upstream, **fields)
        route.full_clean()
        route.save()
        if sync:
            self.sync()
        return route

    def sync(self) -> None:
        """Commit a probe route and wait until the server proxies it: everything committed before
        it is then in the serving process's snapshot too (there is one)."""
        token = uuid.uuid4().hex[:12]
        self.route(self.probe, sync=False, paths=[f"{PROBE_PREFIX}/{token}"], name=f"probe-{token}")

        def answered() -> bool:
            response = self.server.get(f"{PROBE_PREFIX}/{token}")
            return response.status == 200 and response.header("content-type") == "application/json"

        wait_until(answered, SYNC_TIMEOUT)

    def clear(self) -> None:
        Route.objects.all().delete()
        Target.objects.all().delete()
        Service.objects.all().delete()


@pytest.fixture
def wire(
    gateway_server: GatewayServer, transactional_db: Any, probe_upstream: EchoUpstream
) -> Iterator[WireConfig]:
    config = WireConfig(gateway_server, probe_upstream)
    yield config
    config.clear()  # through the ORM, so the version bumps and the servers forget these routes
