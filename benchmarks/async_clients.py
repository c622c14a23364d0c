"""Load generators for the isolation and SSE scenarios: many connections, one asyncio process.

    python -m benchmarks.async_clients hold --port 8000 --path /slow/bench --clients 1000
    python -m benchmarks.async_clients sse --port 8000 --path /sse/events --streams 5000 --duration 20

``hold`` keeps ``--clients`` keep-alive connections each with one request in flight, re-issuing as
each answers, until SIGTERM; SIGUSR1 restarts its counters (the start of a measurement). The first
requests go out evenly over ``--spread`` seconds. ``sse``
opens ``--streams`` event streams, then counts each stream's events over ``--duration`` seconds.

Both open their connections at most :data:`CONNECTING` at a time (a burst of thousands of SYNs
would overflow the server's accept backlog), parse responses with llhttp (``httptools``) and
report on stdout: ``BENCH_READY {...}`` once every connection is open (``sse``: every stream has
its head), ``BENCH_JSON {...}`` at the end. :mod:`benchmarks.scenarios` reads those lines.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import statistics
import time
from collections.abc import Iterator

import httptools

CONNECTING = 200  # connections being opened at once
OPEN_TIMEOUT = 60.0  # seconds to wait for every connection (stream) to open


def report(marker: str, data: dict) -> None:
    print(f"{marker} {json.dumps(data)}", flush=True)


class _Client(asyncio.Protocol):
    """One connection: sends ``request``, parses what comes back; subclasses decide what next."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            assert self.transport is not None
            self.transport.close()
            self.connection_lost(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def _open(factory, port: int, count: int) -> list:  # type: ignore[no-untyped-def]
    """Open ``count`` connections, :data:`CONNECTING` at a time; failures come back as None."""
    loop, gate = asyncio.get_running_loop(), asyncio.Semaphore(CONNECTING)

    async def one():  # type: ignore[no-untyped-def]
        async with gate:
            try:
                return (await loop.create_connection(factory, "127.0.0.1", port))[1]
            except OSError:
                return None

    return list(await asyncio.gather(*(one() for _ in range(count))))


def _head(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


# --- hold: requests held in flight ------------------------------------------------------------------


class _Held(_Client):
    stats: dict  # shared by every connection of the process
    first_sends: Iterator[float]  # when each new connection sends its first request (loop time)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        asyncio.get_running_loop().call_at(next(self.first_sends), self.send)

    def send(self) -> None:
        self.sent_at = time.monotonic()
        super().send()

    def on_message_complete(self) -> None:
        stats, status = self.stats, str(self.parser.get_status_code())
        stats["latencies"].append(time.monotonic() - self.sent_at)
        stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
        if self.parser.should_keep_alive() and not stats["stopping"]:
            self.send()
        elif self.transport is not None:
            self.transport.close()


async def hold(port: int, path: str, clients: int, spread: float) -> None:
    """``spread``: the first requests go out evenly over that many seconds, so that with
    ``spread`` equal to the upstream's delay the answers (and the requests that follow them)
    arrive evenly too, rather than in one burst of ``clients`` every delay."""
    loop = asyncio.get_running_loop()
    stats: dict = {"latencies": [], "statuses": {}, "stopping": False, "since": time.monotonic()}
    _Held.stats = stats
    _Held.first_sends = (loop.time() + i * spread / clients for i in itertools.count())
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(
        signal.SIGUSR1,
        lambda: stats.update(latencies=[], statuses={}, since=time.monotonic()),
    )
    started = time.monotonic()
    conns = await _open(lambda: _Held(_head(path)), port, clients)
    open_conns = [c for c in conns if c is not None]
    report("BENCH_READY", {"clients": clients, "connected": len(open_conns),
                           "seconds": round(time.monotonic() - started, 2)})  # fmt: skip
    await stop.wait()
    stats["stopping"] = True
    seconds = time.monotonic() - stats["since"]
    lost = sum(1 for c in open_conns if c.lost.done())
    latencies = sorted(stats["latencies"]) or [0.0]
    report("BENCH_JSON", {
        "clients": clients, "connected": len(open_conns), "lost": lost,
        "responses": len(stats["latencies"]), "seconds": round(seconds, 2),
        "rps": round(len(stats["latencies"]) / max(seconds, 1e-9), 1),
        "statuses": stats["statuses"],
        "latency_ms": {"p50": round(1000 * statistics.median(latencies), 1),
                       "p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
                       "max": round(1000 * latencies[-1], 1)},
    })  # fmt: skip
    for conn in open_conns:
        if conn.transport is not None:
            conn.transport.abort()


# --- sse: streams counted --------------------------------------------------------------------------


class _Stream(_Client):
    def __init__(self, request: bytes) -> None:
        super().__init__(request)
        self.status = 0
        self.events = 0
        self.pending = b""
        self.opened = asyncio.get_running_loop().create_future()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if not self.opened.done():
            self.opened.set_result(self.status)

    def on_body(self, body: bytes) -> None:
        parts = (self.pending + body).split(b"\n\n")  # an event ends with a blank line
        self.events += len(parts) - 1
        self.pending = parts[-1]

    def on_message_complete(self) -> None:
        if self.transport is not None:
            self.transport.close()  # a stream that ends has failed: ours never end by themselves

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.opened.done():
            self.opened.set_result(0)


async def sse(port: int, path: str, streams: int, duration: float, interval: float) -> None:
    started = time.monotonic()
    conns = [c for c in await _open(lambda: _Stream(_head(path)), port, streams) if c is not None]
    if conns:
        await asyncio.wait([c.opened for c in conns], timeout=OPEN_TIMEOUT)
    opened = [c for c in conns if c.opened.done() and c.opened.result() == 200]
    at_start = {id(c): c.events for c in conns}
    report("BENCH_READY", {"streams": streams, "connected": len(conns), "opened": len(opened),
                           "seconds": round(time.monotonic() - started, 2)})  # fmt: skip
    window_start = time.monotonic()
    await asyncio.sleep(duration)
    window = time.monotonic() - window_start
    counts = sorted(c.events - at_start[id(c)] for c in opened) or [0]
    expected = window / interval
    report("BENCH_JSON", {
        "streams": streams, "connected": len(conns), "opened": len(opened),
        "failed": streams - len(opened) + sum(1 for c in opened if c.lost.done()),
        "window_s": round(window, 2), "expected_per_stream": round(expected, 1),
        "events": {"min": counts[0], "p1": counts[int(0.01 * (len(counts) - 1))],
                   "median": statistics.median(counts), "max": counts[-1],
                   "total": sum(counts)},
        "starved": sum(1 for n in counts if n < 0.8 * expected) + streams - len(opened),
    })  # fmt: skip
    for conn in conns:
        if conn.transport is not None:
            conn.transport.abort()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    held = commands.add_parser("hold", help="keep requests in flight until SIGTERM")
    held.add_argument("--clients", type=int, default=1000)
    held.add_argument("--spread", type=float, default=0.0, help="seconds the first requests take")
    streamed = commands.add_parser("sse", help="count the events of many streams")
    streamed.add_argument("--streams", type=int, default=5000)
    streamed.add_argument("--duration", type=float, default=20.0)
    streamed.add_argument("--interval", type=float, default=1.0, help="the upstream's, seconds")
    for command in (held, streamed):
        command.add_argument("--port", type=int, required=True)
        command.add_argument("--path", required=True)
    args = parser.parse_args()
    if args.command == "hold":
        work = hold(args.port, args.path, args.clients, args.spread)
    else:
        work = sse(args.port, args.path, args.streams, args.duration, args.interval)
    try:
        import uvloop
    except ImportError:
        asyncio.run(work)
    else:
        uvloop.run(work)


if __name__ == "__main__":
    main()
