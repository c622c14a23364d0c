"""A private redis-server for the rate-limit targets, reachable over TCP and a Unix socket.

The limiter's round trip is part of the hot path, and its cost depends on the transport: on this
kind of machine a loopback TCP round trip costs about twice the client CPU of a Unix-socket one.
One server listening on both lets the benchmark measure the two in the same run against the same
Redis, so the difference is the transport alone. It keeps nothing on disk and is stopped with the
other processes.
"""

from __future__ import annotations

import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .servers import LOOPBACK, Processes, free_port


@dataclass(frozen=True)
class RedisServer:
    port: int
    socket_path: Path
    db: int = 0  # the database the URLs select (a --baseline gateway counts in its own)

    @property
    def tcp_url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/{self.db}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}?db={self.db}"


def start_redis(processes: Processes, workdir: Path) -> RedisServer | None:
    """None when redis-server is not installed (the rate-limit targets then use the cache's)."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port, path = free_port(), workdir / "redis.sock"
    command = [
        binary, "--bind", LOOPBACK, "--port", str(port), "--unixsocket", str(path),
        "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", str(workdir),
    ]  # fmt: skip
    processes.start("redis", command)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists():
            try:
                with socket.create_connection((LOOPBACK, port), timeout=0.2):
                    return RedisServer(port, path)
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start:\n{processes.log_tail('redis')}")
