"""Fixtures for the rate-limit engines: a real Redis on db 14, and loopback sockets that fail.

Redis tests skip without a Redis ("needs Redis at host:port"), except under
``GATEWAY_TEST_REQUIRE_SERVICES=1`` (CI), where a missing Redis fails them. Every key is written
under a prefix unique to the run and removed at the end. :class:`TcpProxy` stands between a
limiter and Redis to play the faults: nothing listening, a black hole, a server that answers
nonsense, and a Redis that goes away and comes back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any
from urllib.parse import urlparse

import hiredis
import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from django_gateway.throttling import LocalLimiter, RedisLimiter
from django_gateway.throttling.aio_limiter import AsyncRedisLimiter

_URL = urlparse(os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379"))
REDIS_HOST, REDIS_PORT, REDIS_DB = _URL.hostname or "127.0.0.1", _URL.port or 6379, 14
#: A multiple of an hour: a bucket boundary for every period the tests use.
T0 = 1_699_999_200_000
RUN_PREFIX = f"gwtest-throttle-{uuid.uuid4().hex[:12]}:"


def make_pool(port: int = REDIS_PORT, *, timeout: float = 0.5) -> redis.ConnectionPool:
    """A pool as the gateway builds one: short timeouts, no retries."""
    return redis.ConnectionPool(
        host=REDIS_HOST,
        port=port,
        db=REDIS_DB,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis(connection_pool=make_pool())
    try:
        client.ping()
    except redis.RedisError:
        message = f"needs Redis at {REDIS_HOST}:{REDIS_PORT}"
        if os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    yield client
    for key in client.scan_iter(match=f"{RUN_PREFIX}*", count=1000):
        client.delete(key)
    client.connection_pool.disconnect()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> str:
    """A key prefix of this test's own, inside the run's."""
    return f"{RUN_PREFIX}{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def pools() -> Iterator[Callable[..., redis.ConnectionPool]]:
    """Make pools (see :func:`make_pool`) that are closed after the test."""
    made: list[redis.ConnectionPool] = []

    def factory(*args: Any, **kwargs: Any) -> redis.ConnectionPool:
        made.append(make_pool(*args, **kwargs))
        return made[-1]

    yield factory
    for pool in made:
        pool.disconnect()


@pytest.fixture
def redis_limiter(redis_client: redis.Redis, pools: Callable[..., redis.ConnectionPool]) -> Any:
    return RedisLimiter(pools())


@pytest.fixture(params=["local", "redis"])
def limiter(request: pytest.FixtureRequest) -> Any:
    """Each engine in turn, for the behaviour they share."""
    if request.param == "local":
        return LocalLimiter()
    return request.getfixturevalue("redis_limiter")


class FakeClock:
    """A clock a test moves by hand (the breaker's ``clock`` seam)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TcpProxy:
    """A loopback port in front of Redis whose behaviour a test switches.

    ``mode`` is ``"forward"`` (to Redis), ``"blackhole"`` (accept, never answer) or
    ``"nonsense"`` (answer every command with a number). :meth:`stop` closes the port and every
    connection through it, like a Redis going down; :meth:`start` opens the same port again.
    """

    def __init__(self) -> None:
        self.mode = "forward"
        self.accepted = 0
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            sockets, self._sockets = [self._listener, *self._sockets], []
        for sock in sockets:
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed by the other side
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client, self.mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str) -> None:
        if mode == "blackhole":
            return  # keep the connection open and never answer
        if mode == "nonsense":
            return self._talk_nonsense(client)
        upstream = socket.create_connection((REDIS_HOST, REDIS_PORT))
        with self._lock:
            self._sockets.append(upstream)
        peers = {client: upstream, upstream: client}
        with contextlib.suppress(OSError, ValueError):  # torn down by stop()
            while True:
                readable, _, _ = select.select(list(peers), [], [])
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)

    @staticmethod
    def _talk_nonsense(client: socket.socket) -> None:
        """Pass redis-py's handshake, then answer every command with the integer 7."""
        reader = hiredis.Reader()
        with contextlib.suppress(OSError, ValueError):
            while data := client.recv(65536):
                reader.feed(data)
                while (command := reader.gets()) is not False:
                    name = command[0].upper()
                    if name == b"HELLO":
                        client.sendall(b"%1\r\n$5\r\nproto\r\n:3\r\n")
                    else:
                        client.sendall(b"+OK\r\n" if name in (b"SELECT", b"CLIENT") else b":7\r\n")


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    server = TcpProxy()
    server.start()
    yield server
    server.stop()


def free_port() -> int:
    """A loopback port with nothing listening on it (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The async engine: every test built on ``make`` runs on both of its paths.

Run = Callable[[Coroutine[Any, Any, Any]], Any]
MakeLimiter = Callable[..., AsyncRedisLimiter]


@pytest.fixture
def limiters(redis_client: redis.Redis) -> list[AsyncRedisLimiter]:
    """The limiters a test made; ``run`` closes their connections on each loop it ran."""
    return []


PIPELINED = pytest.mark.parametrize("make", ["pipelined"], indirect=True)
STREAMS = pytest.mark.parametrize("make", ["streams"], indirect=True)


@pytest.fixture(params=["pipelined", "streams"])
def make(request: pytest.FixtureRequest, limiters: list[AsyncRedisLimiter]) -> MakeLimiter:
    """An async limiter as the gateway builds one: no socket timeout, one deadline per call; on
    the pipelined path (with hiredis, the default) or the stream path."""

    def factory(
        port: int = REDIS_PORT,
        *,
        timeout: float = 0.5,
        retry_interval: float = 1.0,
        max_connections: int | None = None,
    ) -> AsyncRedisLimiter:
        pool = redis.asyncio.ConnectionPool(
            host=REDIS_HOST,
            port=port,
            db=REDIS_DB,
            socket_timeout=None,
            socket_connect_timeout=timeout,
            retry=AsyncRetry(NoBackoff(), 0),
            max_connections=max_connections,
        )
        limiter = AsyncRedisLimiter(pool, timeout=timeout, retry_interval=retry_interval)
        if request.param == "streams":
            limiter.pipelined = False
        limiters.append(limiter)
        return limiter

    return factory


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest, limiters: list[AsyncRedisLimiter]) -> Run:
    """Runs a coroutine on a new loop of the kind under test (10 s at most), closing connections after."""
    factory = None
    if request.param == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop

    async def closing(coroutine: Coroutine[Any, Any, Any]) -> Any:
        try:
            async with asyncio.timeout(10):  # a deadline that never fires fails, never hangs
                return await coroutine
        finally:
            for limiter in limiters:
                await limiter.aclose()

    def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(closing(coroutine))

    return run
