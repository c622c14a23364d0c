"""The async engine's auto-pipelined connection (:mod:`~django_gateway.throttling.aio_redis`).

What only the pipelined path does: calls of one loop iteration share one write and one
connection, a cancelled caller's reply is read and dropped without shifting anyone else's, an
error reply fails its own call only, a lost connection fails every call on it, a retired
connection counts against ``max_connections`` until it closes, and a transport that cannot be
taken over falls back to the stream path. ``test_aio_limiter.py`` runs everything else on both
paths.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio

from django_gateway.throttling import LimiterUnavailable, LimitSpec, aio_redis
from django_gateway.throttling.aio_redis import RedisPipe

from .conftest import PIPELINED, FakeClock


@PIPELINED
def test_concurrent_calls_share_one_connection_and_one_write(run, make, proxy, prefix, monkeypatch):
    """The first call of a quiet connection goes out at once; the 39 queued behind it in the
    same loop iteration go out together, and each gets its own reply."""
    limiter = make(proxy.port)
    a = [LimitSpec(f"{prefix}a", 100, 60)]
    flushed: list[int] = []
    flush = RedisPipe._flush

    def counting(pipe: RedisPipe) -> None:
        flushed.append(len(pipe._out))
        flush(pipe)

    async def main() -> list[int]:
        await limiter.hit(a)
        monkeypatch.setattr(RedisPipe, "_flush", counting)
        decisions = await asyncio.gather(*(limiter.hit(a) for _ in range(40)))
        return [decision.statuses[0].remaining for decision in decisions]

    assert run(main()) == list(range(98, 58, -1))
    assert flushed == [39] and proxy.accepted == 1


@PIPELINED
def test_callers_cancelled_in_a_pipeline_leave_the_others_their_own_replies(run, make, prefix):
    limiter = make()
    a = [LimitSpec(f"{prefix}a", 100, 60)]
    gone = (3, 7)

    async def main() -> tuple[list[Any], int]:
        await limiter.hit(a)
        calls = [asyncio.create_task(limiter.hit(a)) for _ in range(10)]
        await asyncio.sleep(0)  # all queued, none answered
        for index in gone:
            calls[index].cancel()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        return outcomes, (await limiter.hit(a)).statuses[0].remaining

    outcomes, after = run(main())
    assert [isinstance(o, asyncio.CancelledError) for o in outcomes] == [
        i in gone for i in range(10)
    ]
    kept = [o.statuses[0].remaining for i, o in enumerate(outcomes) if i not in gone]
    assert kept == [98 - i for i in range(10) if i not in gone]
    assert after == 88  # the cancelled calls had been sent: counted, their replies dropped
    assert all(not (s.deadlines or s.expired) for s in limiter._loops.values())


@PIPELINED
def test_an_error_reply_fails_its_own_call_only(run, make, proxy, redis_client, prefix):
    limiter = make(proxy.port, retry_interval=0)
    redis_client.set(f"{prefix}string", "x")  # the script cannot count in a string
    good, bad = [LimitSpec(f"{prefix}a", 5, 60)], [LimitSpec(f"{prefix}string", 5, 60)]

    async def main() -> list[Any]:
        calls = (limiter.hit(good), limiter.hit(bad), limiter.hit(good))
        return await asyncio.gather(*calls, return_exceptions=True)

    first, failed, third = run(main())
    assert (first.statuses[0].remaining, third.statuses[0].remaining) == (4, 3)
    assert isinstance(failed, LimiterUnavailable) and "WRONGTYPE" in str(failed)
    assert proxy.accepted == 1  # the connection is still in step


@PIPELINED
def test_a_lost_connection_fails_every_call_on_it_and_opens_the_breaker(run, make, proxy, prefix):
    limiter = make(proxy.port, retry_interval=5.0)
    limiter.clock = FakeClock()
    a = [LimitSpec(f"{prefix}a", 100, 60)]

    async def main() -> list[Any]:
        await limiter.hit(a)
        calls = [asyncio.create_task(limiter.hit(a)) for _ in range(5)]
        proxy.stop()  # Redis goes away before any of them is sent
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        with pytest.raises(LimiterUnavailable, match="recently"):
            await limiter.hit(a)
        return outcomes

    assert all(isinstance(o, LimiterUnavailable) and "lost" in str(o) for o in run(main()))


@PIPELINED
def test_max_connections_counts_a_retired_connection_until_it_closes(run, make, proxy):
    """After a call ran out of time its connection takes no new call but stays open for the
    calls already on it, ``timeout`` at most; meanwhile it counts against ``max_connections``."""
    limiter = make(proxy.port, timeout=0.1, retry_interval=0, max_connections=1)
    proxy.mode = "blackhole"

    async def main() -> list[str]:
        outcomes = []
        for pause in (0, 0, 0.15):
            await asyncio.sleep(pause)
            with pytest.raises(LimiterUnavailable) as caught:
                await limiter.hit([LimitSpec("k", 1, 60)])
            outcomes.append(str(caught.value))
        return outcomes

    first, busy, again = run(main())
    assert "no answer" in first and "No free Redis connection" in busy and "no answer" in again
    assert proxy.accepted == 2


@PIPELINED
def test_a_transport_that_cannot_be_taken_over_falls_back_to_the_stream_path(
    run, make, prefix, monkeypatch
):
    monkeypatch.setattr(aio_redis, "_stream", lambda conn: None)
    limiter = make()
    a = [LimitSpec(f"{prefix}a", 100, 60)]

    async def main() -> tuple[list[int], bool]:
        decisions = await asyncio.gather(*(limiter.hit(a) for _ in range(5)))  # queued meanwhile
        remaining = sorted(decision.statuses[0].remaining for decision in decisions)
        return remaining, (await limiter.hit(a)).allowed

    assert run(main()) == ([95, 96, 97, 98, 99], True)
    assert not limiter.pipelined
    assert all(not s.pipes for s in limiter._loops.values())


@PIPELINED
def test_data_left_unread_after_the_handshake_is_a_fault(run, make, monkeypatch):
    async def dirty(conn: Any) -> bool:
        return True

    monkeypatch.setattr(redis.asyncio.connection.AbstractConnection, "can_read", dirty)
    limiter = make()

    async def main() -> None:
        with pytest.raises(LimiterUnavailable, match="unexpected data after the handshake"):
            await limiter.hit([LimitSpec("k", 1, 60)])

    run(main())


class FakeTransport(asyncio.WriteTransport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        pass

    def is_closing(self) -> bool:
        return self.aborted

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True


def test_a_pipe_skips_push_frames_and_closes_on_what_answers_no_command(run):
    async def main() -> tuple[Any, ...]:
        pipes = [RedisPipe(asyncio.get_running_loop(), list, lambda pipe: None) for _ in "ab"]
        transports = [FakeTransport(), FakeTransport()]
        for pipe, transport in zip(pipes, transports, strict=True):
            pipe.attach(transport)
        ping, ping_too = pipes[0].call(("PING",)), pipes[0].call(("PING",))
        pipes[0].data_received(b">2\r\n$7\r\nmessage\r\n:1\r\n+PONG\r\n")  # RESP3 push first
        pipes[0].data_received(b"?\r\n")
        pipes[1].data_received(b":1\r\n")  # nobody asked
        return ping.result(), ping_too.exception(), [t.aborted for t in transports]

    pong, error, aborted = run(main())
    assert pong == b"PONG" and "not RESP" in str(error) and aborted == [True, True]


# Faults.
