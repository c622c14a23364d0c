"""A real gunicorn process serving ``tests.wsgi``, raw-socket clients, and route publishing.

Django's test client hands the gateway a ready-made WSGI environ, so it cannot show what a WSGI
server lets through (odd ``Transfer-Encoding``, a missing ``Host``) or what ends up on the wire
(repeated headers, hop-by-hop headers, chunked framing). These fixtures put gunicorn in between:

- ``gunicorn`` (session): one master, one ``gthread`` worker with two threads, on a free loopback
  port, sharing this process's test database and Redis key prefix through the environment;
- ``wire`` (function, transactional): creates services and routes *committed* to the database and
  waits until the gunicorn worker's configuration snapshot has picked them up.

Responses are parsed with llhttp (``httptools``), never by hand.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
import pytest

from django_gateway.models import Route, Service, Target
from django_gateway.testing.rawservers import HeaderLookup
from django_gateway.testing.upstreams import EchoUpstream, unused_port

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PROBE_PREFIX = "/__wire_probe__"
#: Longest wait for a committed configuration change to show in the gunicorn worker.
SYNC_TIMEOUT = 3.0


# -- responses ---------------------------------------------------------------------------------


@dataclass
class RawResponse(HeaderLookup):
    """One response exactly as it came off the client socket (header names keep their case)."""

    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: False when the connection closed before the message ended (what a HEAD response looks
    #: like to a parser that does not know the request was HEAD).
    complete: bool = False

    @property
    def header_names(self) -> set[str]:
        return {name.lower() for name, _ in self.headers}

    @property
    def is_problem(self) -> bool:
        return (self.header("content-type") or "").startswith("application/problem+json")

    def json(self) -> Any:
        return json.loads(self.body)


class WireConnection:
    """One client connection: send raw bytes, read responses with llhttp.

    ``body_sink``, when set, receives body pieces instead of them being kept (big downloads).
    """

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.body_sink: Callable[[bytes], None] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._current: RawResponse | None = None
        self._body = bytearray()
        self._done: deque[RawResponse] = deque()
        #: 1xx responses received so far, in order.
        self.interim: list[RawResponse] = []
        self._eof = False

    def __enter__(self) -> WireConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_response(self, *, until_eof: bool = False) -> RawResponse:
        """The next response. ``until_eof`` reads until the server closes the connection and
        returns what arrived even if incomplete: for HEAD, where any body byte is a bug."""
        while until_eof or not self._done:
            if self._eof:
                break
            data = self.sock.recv(1 << 20)
            if not data:
                self._eof = True
                break
            self._parser.feed_data(data)
        if self._done:
            return self._done.popleft()
        if until_eof and self._current is not None and self._current.status:
            self._current.body = bytes(self._body)
            return self._current
        raise ConnectionError("the server closed the connection before a complete response")

    def at_eof(self, wait: float = 2.0) -> bool:
        """Whether the server closes the connection (with nothing more sent) within ``wait``."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False

    # llhttp callbacks

    def on_message_begin(self) -> None:
        self._current = RawResponse()
        self._body = bytearray()

    def on_status(self, reason: bytes) -> None:
        assert self._current is not None
        self._current.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._current is not None
        self._current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self._current is not None
        self._current.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.body_sink is not None:
            self.body_sink(body)
        else:
            self._body += body

    def on_message_complete(self) -> None:
        assert self._current is not None
        self._current.body = bytes(self._body)
        self._current.complete = True
        if not 100 <= self._current.status < 200:  # interim responses (100 Continue) are skipped
            self._done.append(self._current)
        else:
            self.interim.append(self._current)
        self._current = None


# -- the gunicorn process ----------------------------------------------------------------------


class GunicornServer:
    """``gunicorn tests.wsgi:application`` in a child process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        self.port = unused_port(HOST)
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "tests.wsgi:application",
            f"--bind={HOST}:{self.port}",
            "--worker-class=gthread",
            "--workers=1",
            "--threads=2",
            "--keep-alive=10",
            "--timeout=60",
            "--graceful-timeout=3",
            "--no-control-socket",
            "--log-level=warning",
            "--error-logfile=-",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
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
        raise RuntimeError(f"gunicorn did not start; its log:\n{self.log()}")

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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def master_pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The master's child processes, from ``/proc`` (no psutil)."""
        master = self.master_pid
        pids: set[int] = set()
        for children in Path(f"/proc/{master}/task").glob("*/children"):
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
                if int(fields[1]) == master:
                    pids.add(int(stat.parent.name))
        return sorted(pids)

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


def request(*lines: str, body: bytes = b"") -> bytes:
    """A raw HTTP/1.x request from its head lines, exactly as written (no header is added)."""
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> float:
    """Poll ``predicate`` until true; returns the seconds it took, raises on timeout."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


@pytest.fixture(scope="session")
def gunicorn(
    django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornServer]:
    """gunicorn serving the test project from the database pytest-django set up."""
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
    server = GunicornServer(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def probe_upstream() -> Iterator[EchoUpstream]:
    """The upstream behind the throw-away routes that tell when gunicorn has the new config."""
    with EchoUpstream() as server:
        yield server


class WireConfig:
    """Creates committed configuration and waits until the gunicorn worker serves it."""

    def __init__(self, server: GunicornServer, probe: EchoUpstream) -> None:
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
        """Commit a probe route and wait until gunicorn proxies it: everything committed before
        it is then in the worker's snapshot too (there is one worker)."""
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
    gunicorn: GunicornServer, transactional_db: Any, probe_upstream: EchoUpstream
) -> Iterator[WireConfig]:
    config = WireConfig(gunicorn, probe_upstream)
    yield config
    config.clear()  # through the ORM, so the version bumps and the worker forgets these routes
