"""The ASGI request body: the WSGI body's rules (framing, limit, replay) over ``receive``.

One framing table runs through both front ends, so the two cannot drift apart; the rest drives
:class:`AsyncRequestBody` with scripted ``http.request`` / ``http.disconnect`` messages.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import pytest

from django_gateway.exceptions import (
    BadRequest,
    GatewayError,
    LengthRequired,
    NotImplementedFraming,
    PayloadTooLarge,
)
from django_gateway.proxy.aio_body import AsyncRequestBody, async_request_body
from django_gateway.proxy.body import REPLAY_LIMIT, request_body

KiB = 1024


def messages(*bodies: bytes, disconnect: bool = False) -> Callable[[], Any]:
    """A ``receive`` that delivers ``bodies`` as one request body, then (optionally) a
    disconnect instead of the last message."""
    script: list[dict[str, Any]] = [
        {"type": "http.request", "body": body, "more_body": True} for body in bodies
    ]
    if disconnect:
        script.append({"type": "http.disconnect"})
    else:
        script[-1]["more_body"] = False
    delivered = iter(script)

    async def receive() -> dict[str, Any]:
        return next(delivered)

    return receive


def read(body: AsyncRequestBody) -> bytes:
    async def main() -> bytes:
        return b"".join([piece async for piece in body.framed_chunks()])

    return asyncio.run(main())


def fails(body: AsyncRequestBody) -> GatewayError:
    with pytest.raises(GatewayError) as failure:
        read(body)
    return failure.value


# -- framing: one table, both front ends ---------------------------------------------------------

FRAMING = [
    # (CGI headers, limit, what both bodies are: an error, None (no body), or the length)
    ({}, None, None),
    ({"CONTENT_LENGTH": ""}, None, None),
    ({"CONTENT_LENGTH": "0"}, None, 0),
    ({"CONTENT_LENGTH": "12"}, 100, 12),
    ({"CONTENT_LENGTH": "-1"}, None, BadRequest),
    ({"CONTENT_LENGTH": "1e3"}, None, BadRequest),
    ({"CONTENT_LENGTH": "101"}, 100, PayloadTooLarge),
    ({"HTTP_TRANSFER_ENCODING": "chunked"}, None, "chunked"),
    ({"HTTP_TRANSFER_ENCODING": "Chunked "}, None, "chunked"),
    ({"HTTP_TRANSFER_ENCODING": "gzip, chunked"}, None, NotImplementedFraming),
    ({"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": "3"}, None, BadRequest),
]


@pytest.mark.parametrize(("headers", "limit", "expected"), FRAMING)
@pytest.mark.parametrize("shell", ["wsgi", "asgi"])
def test_framing_is_decided_alike(
    headers: dict[str, str], limit: int | None, expected: Any, shell: str
) -> None:
    def body() -> Any:
        if shell == "asgi":
            return async_request_body(headers, messages(b""), limit)
        environ = {**headers, "wsgi.input": io.BytesIO(), "wsgi.input_terminated": True}
        return request_body(environ, limit)

    if isinstance(expected, type):
        with pytest.raises(expected):
            body()
        return
    made = body()
    if expected is None:
        assert made is None
    else:
        assert made.length == (None if expected == "chunked" else expected)
        assert made.framing_header == (
            "Transfer-Encoding: chunked" if expected == "chunked" else f"Content-Length: {expected}"
        )


def test_chunked_input_is_never_411_over_asgi() -> None:
    chunked = {"HTTP_TRANSFER_ENCODING": "chunked"}
    with pytest.raises(LengthRequired):  # a WSGI server that cannot end the input
        request_body({**chunked, "wsgi.input": io.BytesIO()}, None)
    body = async_request_body(chunked, messages(b""), None)  # an ASGI server always can
    assert body is not None and body.length is None


# -- reading -------------------------------------------------------------------------------------


def test_a_known_length_goes_out_raw() -> None:
    body = AsyncRequestBody(messages(b"ab", b"", b"cd"), 4, None)
    assert read(body) == b"abcd"
    assert body.finished and body.started


def test_an_unknown_length_goes_out_chunked() -> None:
    body = AsyncRequestBody(messages(b"ab", b"cde", b""), None, None)
    assert read(body) == b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"


def test_a_small_body_is_replayed_and_a_large_one_is_not() -> None:
    small = AsyncRequestBody(messages(b"x" * 10, b"y" * 10), 20, None)
    assert small.fits_replay_buffer
    assert read(small) == read(small) == b"x" * 10 + b"y" * 10
    assert small.replayable

    size = REPLAY_LIMIT + 1
    large = AsyncRequestBody(messages(b"z" * size), size, None)
    assert not large.fits_replay_buffer and large.replayable
    assert read(large) == b"z" * size
    assert not large.replayable
    with pytest.raises(RuntimeError):
        read(large)


def test_an_unknown_length_is_replayed_while_it_is_small() -> None:
    body = AsyncRequestBody(messages(b"a" * KiB, b"b" * KiB), None, None)
    assert not body.fits_replay_buffer  # unknown beforehand
    first = read(body)
    assert body.replayable and read(body) == first


def test_over_the_limit_while_streaming_is_413() -> None:
    body = AsyncRequestBody(messages(b"a" * 60, b"b" * 60), None, 100)
    assert type(fails(body)) is PayloadTooLarge
    assert not body.replayable


def test_shorter_than_content_length_is_400() -> None:
    error = fails(AsyncRequestBody(messages(b"abc"), 5, None))
    assert type(error) is BadRequest and "shorter" in error.detail


def test_longer_than_content_length_is_400() -> None:
    error = fails(AsyncRequestBody(messages(b"abcdef"), 5, None))
    assert type(error) is BadRequest and "longer" in error.detail


def test_a_client_gone_mid_body_is_400() -> None:
    body = AsyncRequestBody(messages(b"abc", disconnect=True), 5, None)
    error = fails(body)
    assert type(error) is BadRequest and "client connection failed" in error.detail
    assert body.finished and not body.replayable


def test_finished_only_once_the_last_message_is_read() -> None:
    body = AsyncRequestBody(messages(b"ab", b"cd"), 4, None)

    async def main() -> list[bool]:
        seen = []
        async for _ in body.framed_chunks():
            seen.append(body.finished)
        return [*seen, body.finished]

    assert asyncio.run(main()) == [False, True, True]
