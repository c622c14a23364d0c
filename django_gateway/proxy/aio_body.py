"""The client's request body on the ASGI shell: ``http.request`` messages streamed upstream.

The same body as :class:`.body.RequestBody` (framing checks, the limit, the replay buffer for a
retry: :class:`.body.StreamedBody`), read from ASGI ``receive`` instead of ``wsgi.input``. The
ASGI server has always de-chunked and ended the input, so a chunked body is never 411 here.
``http.disconnect`` while the body is read is the client's failure (400), as a broken
``wsgi.input`` is.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from ..exceptions import BadRequest
from .body import SHORT_BODY, StreamedBody, framed_body
from .failures import client_body_failure

Receive = Callable[[], Awaitable[dict[str, Any]]]


class AsyncRequestBody(StreamedBody):
    """A body read from ``receive``; ``finished`` once ``receive`` has nothing more for it (the
    last message, or the client gone), so the shell may listen to ``receive`` itself."""

    def __init__(self, receive: Receive, length: int | None, limit: int | None) -> None:
        super().__init__(length, limit)
        self._receive = receive
        self.finished = False

    async def _read(self) -> AsyncGenerator[bytes, None]:
        replay = self._begin()
        if replay is not None:
            for chunk in replay:
                yield chunk
            return
        more = True
        while more:
            message = await self._receive()
            if message["type"] != "http.request":  # http.disconnect
                self.finished = True
                raise self._broken(client_body_failure())
            more = message.get("more_body", False)
            self.finished = not more
            chunk = message.get("body", b"")
            if chunk:
                self._accept(chunk)
                if self.length is not None and self._received > self.length:
                    raise self._broken(
                        BadRequest("The request body is longer than its Content-Length.")
                    )
                yield chunk
        if self.length is not None and self._received < self.length:
            raise self._broken(BadRequest(SHORT_BODY))

    async def framed_chunks(self) -> AsyncGenerator[bytes, None]:
        """The body as it goes on the wire: raw for a known length, else in chunked coding."""
        async with aclosing(self._read()) as chunks:
            if self.length is not None:
                async for chunk in chunks:
                    yield chunk
                return
            async for chunk in chunks:
                yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
        yield b"0\r\n\r\n"


def async_request_body(
    environ: dict[str, Any], receive: Receive, limit: int | None
) -> AsyncRequestBody | None:
    """The ASGI request's body (:func:`.body.framed_body`), or ``None`` when it has none.
    ``environ`` holds the request's headers under their CGI names (``CONTENT_LENGTH``, ...)."""
    return framed_body(
        environ, limit, True, lambda length: AsyncRequestBody(receive, length, limit)
    )
