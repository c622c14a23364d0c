"""The client's request body, streamed from ``wsgi.input`` to the upstream without buffering it.

Small bodies (up to :data:`REPLAY_LIMIT`) are kept as they are read so a retry on another instance
can send them again; a larger body can be sent once, and a retry after it started is refused.
:class:`StreamedBody` holds those rules and :func:`framed_body` the framing checks, for this
WSGI body and the ASGI shell's (:mod:`.aio_body`) alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from ..exceptions import (
    BadRequest,
    GatewayError,
    LengthRequired,
    NotImplementedFraming,
    PayloadTooLarge,
)
from .failures import client_body_failure

CHUNK_SIZE = 64 * 1024
REPLAY_LIMIT = 64 * 1024
SHORT_BODY = "The request body is shorter than its Content-Length."

Body = TypeVar("Body")


class StreamedBody:
    """A body of known length (``Content-Length``) or of unknown length (chunked from the client),
    read once from the client; what both shells' bodies share."""

    def __init__(self, length: int | None, limit: int | None) -> None:
        self.length = length
        self._limit = limit
        self._replay: list[bytes] | None = []
        self._received = 0
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

    def _begin(self) -> list[bytes] | None:
        """The chunks to send again when the body was sent before, else ``None``: read it now."""
        if not self.started:
            self.started = True
            return None
        if self._replay is None:
            raise RuntimeError("A streamed body cannot be sent twice")
        return self._replay

    def _accept(self, chunk: bytes) -> None:
        """Count a chunk read from the client against the limit; keep it while it may replay."""
        self._received += len(chunk)
        if self._limit is not None and self._received > self._limit:
            raise self._broken(PayloadTooLarge())
        if self._replay is not None:
            if self._received <= REPLAY_LIMIT:
                self._replay.append(chunk)
            else:
                self._replay = None

    def _broken(self, error: GatewayError) -> GatewayError:
        """``error`` to raise: the body is cut short, so it can never be sent again."""
        self._replay = None
        return error


class RequestBody(StreamedBody):
    """The body as the WSGI server hands it over (``wsgi.input``)."""

    def __init__(self, stream: Any, length: int | None, limit: int | None) -> None:
        super().__init__(length, limit)
        self._stream = stream

    def _read(self) -> Iterator[bytes]:
        replay = self._begin()
        if replay is not None:
            yield from replay
            return
        remaining = self.length
        while remaining is None or remaining > 0:
            size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            try:
                chunk = self._stream.read(size)
            except OSError as exc:
                raise self._broken(client_body_failure()) from exc
            if not chunk:
                if remaining is not None:
                    raise self._broken(BadRequest(SHORT_BODY))
                return
            self._accept(chunk)
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk

    def framed_chunks(self) -> Iterator[bytes]:
        """The body as it goes on the wire: raw for a known length, else in chunked coding."""
        if self.length is not None:
            yield from self._read()
            return
        for chunk in self._read():
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
        yield b"0\r\n\r\n"


def framed_body(
    environ: Mapping[str, Any],
    limit: int | None,
    terminated: bool,
    make: Callable[[int | None], Body],
) -> Body | None:
    """Validate the request's framing; ``make(length)`` its body (``None``: of unknown length),
    or return ``None`` when it has none.

    The server has already decoded chunked input; what it lets through is checked here: a
    transfer coding other than ``chunked`` is 501, ``Transfer-Encoding`` with ``Content-Length``
    is 400 (a smuggling vector), and a chunked body the server cannot mark ``terminated`` is 411.
    A ``Content-Length`` over ``limit`` is 413 before anything is read.
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
        if not terminated:
            raise LengthRequired()
        return make(None)
    if not content_length:
        return None
    if not content_length.isdigit():
        raise BadRequest("Content-Length must be a non-negative integer.")
    length = int(content_length)
    if limit is not None and length > limit:
        raise PayloadTooLarge(f"The request body has {length} bytes; this route accepts {limit}.")
    return make(length)


def request_body(environ: dict[str, Any], limit: int | None) -> RequestBody | None:
    """The WSGI request's body (:func:`framed_body`), or ``None`` when it has none."""
    return framed_body(
        environ,
        limit,
        bool(environ.get("wsgi.input_terminated")),
        lambda length: RequestBody(environ["wsgi.input"], length, limit),
    )
