"""Running wrk and reading its figures back.

wrk drives keep-alive connections from one thread on its own core; ``wrk_report.lua`` turns its
summary into a JSON line so nothing depends on the layout of wrk's human-readable report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .servers import LOOPBACK, core_busy_seconds, group_cpu_seconds, pinned

SCRIPT = Path(__file__).with_name("wrk_report.lua")
MARKER = "BENCH_JSON "


class WrkMissing(RuntimeError):
    pass


def wrk_binary() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise WrkMissing("wrk is not installed: apt-get install wrk")
    return binary


@dataclass(frozen=True)
class Load:
    connections: int = 16
    threads: int = 1
    duration: float = 10.0
    warmup: float = 2.0
    core: int | None = 0


@dataclass(frozen=True)
class Measurement:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    errors: int  # socket errors plus responses with status >= 400
    error_detail: dict[str, int]

    def as_dict(self) -> dict:
        return asdict(self)


def run_wrk(
    port: int, path: str, load: Load, duration: float, headers: Sequence[str] = ()
) -> Measurement:
    return _measurement(_wrk_json(SCRIPT, port, path, load, duration, headers))


def _wrk_json(
    script: Path, port: int, path: str, load: Load, duration: float, headers: Sequence[str]
) -> dict:
    """Run wrk with ``script`` and return the JSON line the script printed."""
    command = [
        wrk_binary(),
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{max(duration, 1):.0f}s",
        "--timeout", "5s",
        "-s", str(script),
        *(argument for header in headers for argument in ("-H", header)),
        f"http://{LOOPBACK}:{port}{path}",
    ]  # fmt: skip
    done = subprocess.run(
        pinned(command, load.core),
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
        )
    return json.loads(line[len(MARKER) :])


def _measurement(data: dict) -> Measurement:
    seconds = data["duration_us"] / 1e6
    latency = data["latency_us"]
    errors = data["errors"]
    return Measurement(
        requests=data["requests"],
        seconds=round(seconds, 3),
        rps=round(data["requests"] / seconds, 1),
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        p999_ms=latency["p999"] / 1000,
        max_ms=latency["max"] / 1000,
        mean_ms=round(latency["mean"] / 1000, 3),
        errors=sum(errors.values()),
        error_detail=errors,
    )


def measure(
    port: int,
    path: str,
    load: Load,
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
        run_wrk(port, path, load, load.warmup, headers)
    cpu_before = {key: group_cpu_seconds(pid) for key, pid in leaders.items()}
    busy_before, elapsed_before = core_busy_seconds(core)
    result = run_wrk(port, path, load, load.duration, headers)
    busy_after, elapsed_after = core_busy_seconds(core)
    cpu = {key: group_cpu_seconds(pid) - cpu_before[key] for key, pid in leaders.items()}
    elapsed = max(elapsed_after - elapsed_before, 1e-9)
    return {
        **result.as_dict(),
        "cpu_s": {key: round(value, 3) for key, value in cpu.items()},
        "cpu_us_per_request": round(sum(cpu.values()) / max(result.requests, 1) * 1e6, 1),
        "core_share": round(sum(cpu.values()) / elapsed, 3),
        "core_busy": round((busy_after - busy_before) / elapsed, 3),
    }


# --- responses counted by status (benchmarks/flapping.py) -----------------------------------------

STATUSES_SCRIPT = Path(__file__).with_name("wrk_statuses.lua")


@dataclass(frozen=True)
class CountedMeasurement:
    """A :class:`Measurement` plus every response counted by status and by ``X-Upstream``."""

    measurement: Measurement
    statuses: dict[str, int]  # "200" -> responses
    upstreams: dict[str, int]  # X-Upstream value ("-" when absent) -> responses

    def as_dict(self) -> dict:
        return {
            **self.measurement.as_dict(),
            "statuses": self.statuses,
            "upstreams": self.upstreams,
        }


def run_wrk_counting(
    port: int, path: str, load: Load, duration: float, headers: Sequence[str] = ()
) -> CountedMeasurement:
    """:func:`run_wrk` with ``wrk_statuses.lua``: the same figures, and the response counts."""
    data = _wrk_json(STATUSES_SCRIPT, port, path, load, duration, headers)
    return CountedMeasurement(_measurement(data), data["statuses"], data["upstreams"])
