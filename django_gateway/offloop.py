"""The calls that may block, and the event loop they must never block (DESIGN §3).

A few stages sometimes need I/O that has no async client: an API key the snapshot has not cached
yet (a database query), a JWKS document to fetch, a brute-force count in Redis, a Consul service's
first answer, a configuration poll. Each of those places calls :func:`must_not_block` first. Under
the WSGI shell nothing is running an event loop in the thread, so the call goes on as before; on
the ASGI shell's event loop it raises :class:`WouldBlock` instead, before anything was done, and
the shell runs the same stage again in a worker thread (:mod:`django_gateway.asgi.offload`). So
the hot path (everything cached) never leaves the loop, a miss never blocks it, and both shells
run one implementation of every stage.
"""

from __future__ import annotations

import asyncio


class WouldBlock(Exception):
    """The call would block the event loop; nothing was done yet, so the caller may repeat the
    whole stage off the loop."""


def must_not_block(what: str) -> None:
    """Raise :class:`WouldBlock` when called on a thread that runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise WouldBlock(what)
