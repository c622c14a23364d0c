"""The upstream of the isolation and SSE scenarios: slow answers, or server-sent events.

    python -m benchmarks.async_upstream --port 8081 --delay 2

- ``GET <any path ending in /events>`` opens a stream of server-sent events (chunked,
  ``text/event-stream``): one event per second per stream, each on its own timer from the
  moment the stream opened (so 5,000 streams send 5,000 events a second, spread over the second),
  until the client goes away;
- any other request is answered after ``--delay`` seconds with the 1 KiB payload, keep-alive.

asyncio with uvloop when installed, llhttp (``httptools``) parsing the requests; thousands of
connections cost a socket and a timer each.
"""

from __future__ import annotations

import argparse
import asyncio

import httptools

from .payload import BODY

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
)
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
EVENT_INTERVAL = 1.0


class _Protocol(asyncio.Protocol):
    delay = 2.0  # set from the command line

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None
        self.url = b""
        self.events = 0
        self.started = 0.0

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        url, self.url = self.url, b""
        if url.split(b"?", 1)[0].endswith(b"/events"):
            self.transport.write(STREAM_HEAD)
            self.started = self.loop.time()
            self._schedule_event()
        else:
            self.timer = self.loop.call_later(self.delay, self._answer)

    def _answer(self) -> None:
        self.timer = None
        if not self.transport.is_closing():
            self.transport.write(RESPONSE)

    def _schedule_event(self) -> None:
        at = self.started + (self.events + 1) * EVENT_INTERVAL  # no drift: absolute times
        self.timer = self.loop.call_at(at, self._event)

    def _event(self) -> None:
        if self.transport.is_closing():
            return
        self.events += 1
        event = b"id: %d\ndata: tick %d\n\n" % (self.events, self.events)
        self.transport.write(b"%x\r\n%s\r\n" % (len(event), event))
        self._schedule_event()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Protocol, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds before an answer [2]")
    args = parser.parse_args()
    _Protocol.delay = args.delay
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
