"""The example project: ``make demo`` seeds idempotently, refuses taken ports without touching
anything, and its upstreams answer.

The demo runs in a subprocess against a temporary SQLite file (``EXAMPLE_DB_PATH``), the way
``make demo`` runs it (see :mod:`tests.example_demo`), so the tests see the project's real
settings and not the suite's.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import socket
import sqlite3
from pathlib import Path

from tests.example_demo import EXAMPLE, free_ports, run_demo, running_demo

COUNTS = {
    "services": "SELECT COUNT(*) FROM django_gateway_service",
    "targets": "SELECT COUNT(*) FROM django_gateway_target",
    "routes": "SELECT COUNT(*) FROM django_gateway_route",
    "superusers": "SELECT COUNT(*) FROM auth_user WHERE is_superuser",
    "rate limits": "SELECT COUNT(*) FROM django_gateway_ratelimit",
}


def seed_only(db_path: Path, *args: str) -> str:
    result = run_demo(db_path, "--seed-only", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def table_counts(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as db:
        return {name: db.execute(sql).fetchone()[0] for name, sql in COUNTS.items()}


def database_dump(db_path: Path) -> list[str]:
    """Every row of every table, as SQL: equal dumps mean nothing was written."""
    db = sqlite3.connect(db_path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_seed_only_is_idempotent_and_follows_the_upstream_ports(tmp_path: Path) -> None:
    db_path = tmp_path / "demo.sqlite3"
    assert "admin / admin" in seed_only(db_path)
    after_first = table_counts(db_path)
    assert after_first == {
        "services": 2,
        "targets": 3,
        "routes": 4,
        "superusers": 1,
        "rate limits": 1,
    }

    assert "admin / admin" not in seed_only(db_path)  # the superuser already exists
    assert table_counts(db_path) == after_first

    seed_only(db_path, "--upstream-ports", "9101", "9102")  # the ports a later run asked for
    assert table_counts(db_path) == after_first
    with sqlite3.connect(db_path) as db:
        ports = sorted(row[0] for row in db.execute("SELECT port FROM django_gateway_target"))
        routes = dict(db.execute("SELECT name, paths FROM django_gateway_route"))
    assert ports == [9101, 9102, 9102]
    assert json.loads(routes["echo"]) == ["/echo"]
    assert json.loads(routes["orders-v1"]) == ["/v1/orders"]


def test_a_second_demo_names_the_first_and_leaves_it_working(tmp_path: Path) -> None:
    """Issue #9 item 7: a second ``make demo`` re-seeded the shared database (targets on its own
    short-lived upstreams) and revoked the first demo's key before failing on the port."""
    ports = free_ports(3)
    with running_demo(tmp_path, ports[0], (ports[1], ports[2])) as first:
        before = database_dump(first.db_path)

        second = run_demo(first.db_path, f"127.0.0.1:{ports[0]}", "--upstream-ports", "0", "0")

        assert second.returncode == 1
        assert f"127.0.0.1:{ports[0]} (the gateway) is in use by pid {first.process.pid}: " in (
            second.stderr
        )
        assert "example_project/manage.py demo" in second.stderr  # the holder's command line
        assert "changed nothing" in second.stderr
        assert database_dump(first.db_path) == before  # its key and targets, and all the rest
        status, _, body = get(first.port, "/secure/hello", {"X-API-Key": first.api_key})
        assert status == 200
        assert json.loads(body)["target"] == "/hello"


def test_a_taken_upstream_port_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    db_path = tmp_path / "demo.sqlite3"
    gateway, free = free_ports(2)
    with socket.create_server(("127.0.0.1", 0)) as holder:  # another program's listener
        held = holder.getsockname()[1]
        seed_only(db_path, "--upstream-ports", str(held), str(free))
        before = database_dump(db_path)

        result = run_demo(
            db_path, f"127.0.0.1:{gateway}", "--upstream-ports", str(free), str(held), timeout=60
        )

    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if f"127.0.0.1:{held}" in line]
    assert f"127.0.0.1:{held} (upstream-b) is in use by pid {os.getpid()}: " in line
    assert "pytest" in line  # the holder's command line
    assert "upstream-a" not in result.stderr  # its port was free: only the taken one is named
    assert database_dump(db_path) == before
    for port in (gateway, free):  # nothing is left listening
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            continue
        raise AssertionError(f"port {port} is still listening")


def load_demo_upstreams():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("demo_upstreams", EXAMPLE / "demo/upstreams.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_upstream_answers_on_its_port_one_header_per_line() -> None:
    upstreams = load_demo_upstreams()
    (wanted,) = free_ports(1)
    with upstreams.DemoUpstream("upstream-a", wanted) as upstream:
        assert upstream.port == wanted
        status, headers, body = get(upstream.port, "/hello?x=1")
    assert status == 200
    assert headers["X-Demo-Upstream"] == "upstream-a"
    assert int(headers["Content-Length"]) == len(body)
    echo = json.loads(body)
    assert echo["target"] == "/hello?x=1"
    lines = body.decode().splitlines()
    assert lines[:3] == ["{", '  "method": "GET",', '  "target": "/hello?x=1",']
    assert f'    ["Host", "127.0.0.1:{wanted}"],' in lines
