"""Concurrent clients for the rate-limit tests: forked client processes, each with a thread pool.

Plain ``http.client`` on a fresh connection per request, so every request is a separate
admission decision, and the requests of one process really are in flight together.
"""

from __future__ import annotations

import http.client
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

HOST = "127.0.0.1"


class Outcome(NamedTuple):
    """What one client saw: the gateway it asked, the status, and the limit headers."""

    port: int
    status: int
    retry_after: str | None
    limit: str | None
    remaining: str | None


def get(port: int, target: str) -> Outcome:
    connection = http.client.HTTPConnection(HOST, port, timeout=20)
    try:
        connection.request("GET", target, headers={"Host": "wire.test"})
        response = connection.getresponse()
        response.read()
        return Outcome(
            port,
            response.status,
            response.getheader("Retry-After"),
            response.getheader("RateLimit-Limit"),
            response.getheader("RateLimit-Remaining"),
        )
    finally:
        connection.close()


def _client_process(ports: tuple[int, ...], target: str, count: int, threads: int) -> list[Outcome]:
    """``count`` requests over ``threads`` threads, taking the gateways in turn."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(get, [ports[i % len(ports)] for i in range(count)], [target] * count))


def hammer(
    ports: tuple[int, ...], target: str, requests: int, processes: int = 4, threads: int = 8
) -> list[Outcome]:
    """``requests`` GETs of ``target``, spread evenly over the gateways on ``ports``, from
    ``processes`` forked client processes of ``threads`` threads each."""
    per_process = requests // processes
    assert per_process * processes == requests
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.starmap(_client_process, [(ports, target, per_process, threads)] * processes)
    return [outcome for result in results for outcome in result]
