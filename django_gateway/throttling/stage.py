"""The ``throttle`` pipeline stage: every limit that applies, one limiter call, the headers.

It runs after authentication (limits count by consumer or credential) and group checks (a request
refused there never spends quota). Allowed requests leave the ``RateLimit-*`` headers on the
Exchange for whatever response follows; a request over any limit gets 429 with ``Retry-After``
and spends nothing in the other limits. While the limiter is unavailable, fault-tolerant limits
let traffic through without headers (warned about and counted); any other limit answers 503.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from ..conf import gateway_settings
from ..config import CompiledLimit
from ..exceptions import ServiceUnavailable, TooManyRequests
from ..exchange import Exchange
from ..runtime import runtime
from .base import Decision, LimiterUnavailable, LimitSpec, LimitStatus
from .engine import (
    client_part,
    consumer_part,
    counter_key,
    credential_part,
    header_part,
)

logger = logging.getLogger(__name__)

#: Counted each time a request passes unlimited because the limiter is unavailable.
UNAVAILABLE_ADMITTED = "rate_limit.unavailable_admitted"
#: Counted each time a request gets 503 because a limit that is not fault-tolerant cannot be checked.
UNAVAILABLE_REFUSED = "rate_limit.unavailable_refused"


def throttle(exchange: Exchange) -> None:
    counted = limits_to_count(exchange)
    if counted is None:
        return
    try:
        decision = runtime.limiter.hit(counted.specs)
    except LimiterUnavailable as exc:
        limiter_unavailable(counted.limits, exc)
        return
    apply_decision(exchange, counted.limits, decision)


@dataclass(frozen=True, slots=True)
class Counted:
    """The limits that apply to one request and the counters they spend."""

    limits: tuple[CompiledLimit, ...]
    specs: list[LimitSpec]


def limits_to_count(exchange: Exchange) -> Counted | None:
    """Which limits apply and under which keys (no I/O); ``None`` when the route has none. The
    limiter call between this and :func:`apply_decision` is the stage's only I/O, sync under
    WSGI and async on the ASGI shell's loop."""
    limits = exchange.route.limits
    if limits is None:
        return None
    identity = exchange.identity
    applicable = limits.for_consumer(
        identity.consumer.id if identity is not None and not identity.anonymous else None
    )
    specs = [
        LimitSpec(
            counter_key(limit.id, limit.seconds, who(limit, exchange)), limit.limit, limit.seconds
        )
        for limit in applicable
    ]
    return Counted(applicable, specs)


def apply_decision(
    exchange: Exchange, limits: tuple[CompiledLimit, ...], decision: Decision
) -> None:
    """The limiter's answer: ``RateLimit-*`` headers for the response, or 429."""
    if gateway_settings.RATE_LIMIT_HEADERS:
        exchange.response_headers += tuple(rate_limit_headers(limits, decision))
    if not decision.allowed:
        raise TooManyRequests(
            "This client is over a rate limit; retry after the time in Retry-After.",
            retry_after=max(1, math.ceil(decision.retry_after)),
        )


def who(limit: CompiledLimit, exchange: Exchange) -> str:
    """The counted party; anonymous requests, and requests without the header, count by IP."""
    identity = exchange.identity
    if limit.limit_by == "consumer":
        if identity is not None and not identity.anonymous:
            return consumer_part(identity.consumer.id)
    elif limit.limit_by == "credential":
        if identity is not None and identity.credential:
            return credential_part(identity.credential_type, identity.credential)
    elif limit.limit_by == "header":
        value = exchange.environ.get(limit.header_key)
        if value:
            return header_part(value)
    return client_part(exchange.client_ip)


def rate_limit_headers(
    limits: tuple[CompiledLimit, ...], decision: Decision
) -> list[tuple[str, str]]:
    """``RateLimit-*`` for the most restrictive limit, ``X-RateLimit-*-<Period>`` per period."""
    statuses = decision.statuses
    tightest = statuses[0] if len(statuses) == 1 else min(statuses, key=_restrictiveness)
    headers = [
        ("RateLimit-Limit", str(tightest.spec.limit)),
        ("RateLimit-Remaining", str(tightest.remaining)),
        ("RateLimit-Reset", str(math.ceil(tightest.reset))),
    ]
    shown: dict[str, LimitStatus] = {}  # per period, the most restrictive limit
    for limit, status in zip(limits, statuses, strict=True):
        seen = shown.get(limit.limit_header)
        if seen is None or _restrictiveness(status) < _restrictiveness(seen):
            shown[limit.limit_header] = status
    for limit in limits:
        shown_status = shown.pop(limit.limit_header, None)
        if shown_status is not None:
            headers.append((limit.limit_header, str(shown_status.spec.limit)))
            headers.append((limit.remaining_header, str(shown_status.remaining)))
    return headers


def _restrictiveness(status: LimitStatus) -> tuple[int, float]:
    return status.remaining, -status.reset


def limiter_unavailable(limits: tuple[CompiledLimit, ...], error: LimiterUnavailable) -> None:
    """The fault policy: fault-tolerant limits let the request through (counted, warned about),
    any other answers 503."""
    if all(limit.fault_tolerant for limit in limits):
        count = runtime.counters.increment(UNAVAILABLE_ADMITTED)
        runtime.outage_warnings.warn(
            f"Rate limits not enforced ({count} request(s) so far in this process): {error}"
        )
        return
    runtime.counters.increment(UNAVAILABLE_REFUSED)
    runtime.outage_warnings.warn(f"Refusing requests on strict rate limits: {error}")
    raise ServiceUnavailable(
        "Rate limits cannot be checked right now.",
        retry_after=max(1, math.ceil(gateway_settings.RATE_LIMIT_RETRY_INTERVAL)),
    )
