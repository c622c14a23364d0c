"""The client's request body, streamed from ``wsgi.input`` to the upstream without buffering it.

Small bodies (up to :data:`REPLAY_LIMIT`) are kept as they are read so a retry on another instance
can send them again; a larger body can be sent once, and a retry after it started is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..exceptions import (
    BadRequest,
    LengthRequired,
    NotImplementedFraming,
    PayloadTooLarge,
)
from .failures import client_body_failure

CHUNK_SIZE = 64 * 1024
REPLAY_LIMIT = 64 * 1024


class RequestBody:
    """A body of known length (``Content-Length``) or of unknown length (chunked from the client)."""

    def __init__(self, stream: Any, length: int | None, limit: int | None) -> None:
        self._stream = stream
        self.length = length
        self._limit = limit
        self._replay: list[bytes] | None = []
        self.started = False

    @property
    def framing_header(self) -> str:
        if self.length is None:
            return "Transfer-Encoding: chunked"
        return f"Content-Length: {self.length}"

    @property
    def fits_replay_buffer(self) -> bool:
        """Known before sending: can this body be sent again whatever happens?"""
        return self.length is not None and self.length <= REPLAY_LIMIT

    @property
    def replayable(self) -> bool:
        return not self.started or self._replay is not None

    def _read(self) -> Iterator[bytes]:
        if self.started:
            if self._replay is None:
                raise RuntimeError("A streamed body cannot be sent twice")
            yield from self._replay
            return
        self.started = True
        remaining = self.length
        total = 0
        while remaining is None or remaining > 0:
            size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            try:
                chunk = self._stream.read(size)
            except OSError as exc:
                self._replay = None
                raise client_body_failure() from exc
            if not chunk:
                if remaining is not None:
                    self._replay = None
                    raise BadRequest("The request body is shorter than its Content-Length.")
                return
            total += len(chunk)
            if self._limit is not None and total > self._limit:
                self._replay = None
                raise PayloadTooLarge()
            if remaining is not None:
                remaining -= len(chunk)
            if self._replay is not None:
                if total <= REPLAY_LIMIT:
                    self._replay.append(chunk)
                else:
                    self._replay = None
            yield chunk

    def framed_chunks(self) -> Iterator[bytes]:
        """The body as it goes on the wire: raw for a known length, else in chunked coding."""
        if self.length is not None:
            yield from self._read()
            return
        for chunk in self._read():
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
        yield b"0\r\n\r\n"


def request_body(environ: dict[str, Any], limit: int | None) -> RequestBody | None:
    """Validate the request's framing and return its body, or ``None`` when it has none.

    The WSGI server has already decoded chunked input; what it lets through is checked here:
    a transfer coding other than ``chunked`` is 501, ``Transfer-Encoding`` with ``Content-Length`` is
    400 (a smuggling vector), and a chunked body the server cannot mark terminated is 411.
    """
    transfer_encoding = environ.get("HTTP_TRANSFER_ENCODING")
    content_length = environ.get("CONTENT_LENGTH")
    if transfer_encoding is not None:
        codings = [c.strip().lower() for c in transfer_encoding.split(",")]
        if codings != ["chunked"]:
            raise NotImplementedFraming(
                f"Transfer-Encoding {transfer_encoding!r} is not supported; use chunked."
            )
        if content_length:
            raise BadRequest("Transfer-Encoding and Content-Length must not both be sent.")
        if not environ.get("wsgi.input_terminated"):
            raise LengthRequired()
        return RequestBody(environ["wsgi.input"], None, limit)
    if not content_length:
        return None
    if not content_length.isdigit():
        raise BadRequest("Content-Length must be a non-negative integer.")
    length = int(content_length)
    if limit is not None and length > limit:
        raise PayloadTooLarge(f"The request body has {length} bytes; this route accepts {limit}.")
    return RequestBody(environ["wsgi.input"], length, limit)
