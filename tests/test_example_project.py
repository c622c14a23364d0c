"""The example project: ``manage.py demo --seed-only`` is idempotent, and its upstreams answer.

The command runs in a subprocess against a temporary SQLite file (``EXAMPLE_DB_PATH``), the way
``make demo`` runs it, so the test sees the project's real settings and not the suite's.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from django_gateway.testing.upstreams import unused_port

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"
COUNTS = {
    "services": "SELECT COUNT(*) FROM django_gateway_service",
    "targets": "SELECT COUNT(*) FROM django_gateway_target",
    "routes": "SELECT COUNT(*) FROM django_gateway_route",
    "superusers": "SELECT COUNT(*) FROM auth_user WHERE is_superuser",
    "rate limits": "SELECT COUNT(*) FROM django_gateway_ratelimit",
}


def run_demo(db_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "EXAMPLE_DB_PATH": str(db_path),
        "DJANGO_SETTINGS_MODULE": "example_project.settings",  # pytest-django set the suite's
    }
    return subprocess.run(
        [sys.executable, str(EXAMPLE / "manage.py"), "demo", "--seed-only", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def table_counts(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as db:
        return {name: db.execute(sql).fetchone()[0] for name, sql in COUNTS.items()}


def test_seed_only_is_idempotent_and_follows_the_upstream_ports(tmp_path: Path) -> None:
    db_path = tmp_path / "demo.sqlite3"
    first = run_demo(db_path)
    assert "admin / admin" in first.stdout
    after_first = table_counts(db_path)
    assert after_first == {
        "services": 2,
        "targets": 3,
        "routes": 4,
        "superusers": 1,
        "rate limits": 1,
    }

    second = run_demo(db_path)
    assert "admin / admin" not in second.stdout  # the superuser already exists
    assert table_counts(db_path) == after_first

    run_demo(db_path, "--upstream-ports", "9101", "9102")  # the ports a later run ended up on
    assert table_counts(db_path) == after_first
    with sqlite3.connect(db_path) as db:
        ports = sorted(row[0] for row in db.execute("SELECT port FROM django_gateway_target"))
        routes = dict(db.execute("SELECT name, paths FROM django_gateway_route"))
    assert ports == [9101, 9102, 9102]
    assert json.loads(routes["echo"]) == ["/echo"]
    assert json.loads(routes["orders-v1"]) == ["/v1/orders"]


def load_demo_upstreams():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("demo_upstreams", EXAMPLE / "demo/upstreams.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get(port: int, path: str) -> tuple[int, dict[str, str], dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


def test_demo_upstream_binds_the_wanted_port_or_falls_back() -> None:
    upstreams = load_demo_upstreams()
    wanted = unused_port()
    with upstreams.DemoUpstream("upstream-a", wanted) as first:
        assert first.port == wanted and not first.fell_back
        status, headers, body = get(first.port, "/hello?x=1")
        assert status == 200
        assert headers["X-Demo-Upstream"] == "upstream-a"
        assert body["target"] == "/hello?x=1"
        with upstreams.DemoUpstream("upstream-b", wanted) as second:  # taken: a free port
            assert second.fell_back and second.port != wanted
            assert get(second.port, "/")[1]["X-Demo-Upstream"] == "upstream-b"
