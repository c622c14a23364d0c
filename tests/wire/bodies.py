"""Big bodies and the server's memory while they move: helpers for the streaming tests.

Bodies are :func:`~django_gateway.testing.upstreams.pattern_bytes` (the pattern repeats every 256
bytes, so 1 MiB blocks concatenate into it); digests are computed block by block, so nothing the
test holds grows with the body either.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django_gateway.testing.upstreams import (
    RecordedRequest,
    Reply,
    echo_reply,
    pattern_bytes,
    stream_bytes,
)

from .conftest import GatewayServer

MiB = 1024 * 1024
SIZE = 200 * MiB
BLOCK = pattern_bytes(MiB)
#: Buffering a 200 MB body anywhere would show as ~200 MB of growth; pools and buffers do not.
MAX_GROWTH = 50 * MiB


def pattern_sha256(size: int) -> str:
    assert size % MiB == 0
    digest = hashlib.sha256()
    for _ in range(size // MiB):
        digest.update(BLOCK)
    return digest.hexdigest()


@contextmanager
def peak_rss(pid: int, interval: float = 0.02) -> Iterator[list[int]]:
    """Samples ``pid``'s RSS until the block ends; yields a list whose first item becomes the peak."""
    peak = [GatewayServer.rss(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            peak[0] = max(peak[0], GatewayServer.rss(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], GatewayServer.rss(pid))


def warm_up(server: GatewayServer) -> None:
    """A few ordinary requests first, so imports and pools do not count as growth."""
    for _ in range(3):
        assert server.get("/api/warm").status == 200


class Digest:
    """A body sink for :class:`~.conftest.WireConnection`: counts and hashes what arrives."""

    def __init__(self) -> None:
        self.received = 0
        self._digest = hashlib.sha256()

    def __call__(self, piece: bytes) -> None:
        self._digest.update(piece)
        self.received += len(piece)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def download_responder(size: int, path: str = "/big") -> Callable[[RecordedRequest], Reply]:
    """``path`` streams ``size`` pattern bytes (chunked); anything else is echoed."""

    def respond(request: RecordedRequest) -> Reply:
        if request.path == path:
            return stream_bytes(size, 256 * 1024)
        return echo_reply(request)

    return respond


def upload_head(size: int, target: str = "/api/upload") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: wire.test\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
