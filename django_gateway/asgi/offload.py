"""Blocking work, moved off the event loop only when it would block (DESIGN §3).

The stages are the WSGI shell's own functions. Run on the loop, a stage either finishes from
memory (the hot path: snapshot, cached keys, cached JWKS) or raises
:class:`~django_gateway.offloop.WouldBlock` before doing anything, and :func:`run_stage` runs it
again in one of the runtime's offload threads. The configuration poll is the same idea: the held
snapshot serves while a thread polls (:func:`current_snapshot`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import close_old_connections

from ..exchange import Exchange
from ..offloop import WouldBlock
from ..runtime import runtime
from ..snapshot import Snapshot

logger = logging.getLogger(__name__)

_Result = TypeVar("_Result")


def _in_thread(call: Callable[[], _Result]) -> _Result:
    try:
        return call()
    finally:
        # A thread of the pool is no request: close what CONN_MAX_AGE says a request would close.
        close_old_connections()


async def offload(call: Callable[[], _Result]) -> _Result:
    """``call()`` in an offload thread; the loop goes on meanwhile."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(runtime.offload, _in_thread, call)


async def run_stage(stage: Callable[[Exchange], None], exchange: Exchange) -> None:
    """Run ``stage`` on the loop; again in a thread if it needs to block."""
    try:
        stage(exchange)
    except WouldBlock:
        await offload(lambda: stage(exchange))


_polling: set[asyncio.Future[Snapshot]] = set()  # at most one poll in flight per process


async def current_snapshot() -> Snapshot:
    """The snapshot to serve; the first one is built off the loop, and a due poll runs in a
    thread while the held snapshot keeps serving (as the WSGI threads do meanwhile)."""
    holder = runtime.snapshots
    snapshot, due = holder.held()
    if snapshot is None:
        return await offload(holder.get)
    if due and not _polling:
        poll = asyncio.ensure_future(offload(holder.get))
        _polling.add(poll)
        poll.add_done_callback(_polled)
    return snapshot


def _polled(poll: asyncio.Future[Snapshot]) -> None:
    _polling.discard(poll)
    if not poll.cancelled() and poll.exception() is not None:
        # holder.get logs a failed refresh itself and keeps the snapshot; this is anything else
        logger.error("Configuration poll failed", exc_info=poll.exception())
