"""The access stages on the event loop: the WSGI shell's own, in the same order.

``CHECKS`` of :mod:`django_gateway.pipeline` is the one list of stages; here each runs on the
loop (:func:`~.offload.run_stage` moves one off it only when it would block), except rate limits,
whose every call is I/O: :func:`athrottle` is the throttle stage's pure halves around the async
limiter, which counts in the same Redis keys with the same script as the sync one.
"""

from __future__ import annotations

from ..exchange import Exchange
from ..pipeline import CHECKS
from ..runtime import runtime
from ..throttling.base import LimiterUnavailable
from ..throttling.stage import apply_decision, limiter_unavailable, limits_to_count, throttle
from .offload import run_stage


async def athrottle(exchange: Exchange) -> None:
    counted = limits_to_count(exchange)
    if counted is None:
        return
    try:
        decision = await runtime.async_limiter.hit(counted.specs)
    except LimiterUnavailable as exc:
        limiter_unavailable(counted.limits, exc)
        return
    apply_decision(exchange, counted.limits, decision)


async def run_checks(exchange: Exchange) -> None:
    """Every access stage, or the first one's refusal (a :class:`GatewayError`)."""
    for check in CHECKS:
        if check is throttle:
            await athrottle(exchange)
        else:
            await run_stage(check, exchange)
