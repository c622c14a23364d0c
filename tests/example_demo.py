"""The example project's demo as a user runs it: ``make demo``'s own recipe, in a subprocess.

The tests that need a running demo start it here, on ports the kernel reports free (never 8000,
where a developer's demo may be running) and against a temporary SQLite file
(``EXAMPLE_DB_PATH``), so the suite and a developer's demo never meet.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
#: The API key the demo prints in its tour (``gw_<prefix>_<secret>``).
API_KEY = re.compile(r"gw_([a-z0-9]+)_[A-Za-z0-9_-]+")
START_TIMEOUT = 60.0


def free_ports(count: int) -> list[int]:
    """``count`` different ports nothing listens on, in increasing order (so targets listed by
    port come in the same order as with the demo's defaults, 8101 before 8102)."""
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return sorted(probe.getsockname()[1] for probe in probes)


def demo_env(db_path: Path) -> dict[str, str]:
    """The environment of a shell in the checkout, plus the demo's database file."""
    return {
        **os.environ,
        "EXAMPLE_DB_PATH": str(db_path),
        "DJANGO_SETTINGS_MODULE": "example_project.settings",  # pytest-django set the suite's
        "PYTHONUNBUFFERED": "1",  # the tour (and its key) reaches the log file at once
    }


def make_demo_command() -> list[str]:
    """The command ``make demo`` runs, read from the Makefile so the tests run what users run."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("demo:"))
    recipe = lines[start + 1]
    assert recipe.startswith("\t"), f"no recipe under 'demo:' in the Makefile: {recipe!r}"
    return [sys.executable if word == "$(BIN)/python" else word for word in shlex.split(recipe)]


def run_demo(db_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``make demo`` with ``args`` to the end (a demo that refuses, or ``--seed-only``)."""
    return subprocess.run(
        [*make_demo_command(), *args],
        cwd=ROOT,
        env=demo_env(db_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class RunningDemo:
    process: subprocess.Popen[bytes]
    port: int
    upstream_ports: tuple[int, int]
    db_path: Path
    stdout_path: Path
    stderr_path: Path
    api_key: str

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()


@contextmanager
def running_demo(
    workdir: Path, port: int, upstream_ports: tuple[int, int], db_path: Path | None = None
) -> Iterator[RunningDemo]:
    """``make demo 127.0.0.1:PORT --upstream-ports A B``, serving until the block ends."""
    db_path = db_path or workdir / "demo.sqlite3"
    stdout_path, stderr_path = workdir / "demo.out", workdir / "demo.err"
    args = [f"127.0.0.1:{port}", "--upstream-ports", *map(str, upstream_ports)]
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [*make_demo_command(), *args],
            cwd=ROOT,
            env=demo_env(db_path),
            stdout=stdout,
            stderr=stderr,
        )
    try:
        _wait_until_listening(process, port, stderr_path)
        match = API_KEY.search(stdout_path.read_text())
        assert match, f"the demo printed no API key:\n{stdout_path.read_text()}"
        yield RunningDemo(
            process, port, upstream_ports, db_path, stdout_path, stderr_path, match[0]
        )
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, stderr: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"the demo exited with {process.returncode}:\n{stderr.read_text()}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the demo was not listening on {port} after {START_TIMEOUT} s")
