"""A consumer's live quota and the reset of its counters, for the admin (and later the API).

Only limits that count a consumer as such are listed: those limiting by consumer, and by
credential (one row per API key and JWT credential). Limits by IP or header count clients, not
consumers, so a consumer's page cannot know which of their counters to show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db.models import Q

from ..models import Consumer, LimitBy, RateLimit
from ..runtime import runtime
from .base import LimiterUnavailable, LimitSpec
from .engine import consumer_part, counter_key, credential_part


@dataclass(frozen=True, slots=True)
class QuotaRow:
    limit: RateLimit
    counted: str  # "consumer", or which credential
    key: str
    remaining: int | None = None  # None: the limiter could not be asked
    reset: int | None = None  # seconds


def _counted_keys(consumer: Consumer) -> list[tuple[RateLimit, str, str]]:
    """``(limit, label, key)`` for every counter of this consumer."""
    limits = (
        RateLimit.objects.filter(enabled=True)
        .filter(Q(consumer=consumer) | Q(consumer__isnull=True))
        .filter(limit_by__in=(LimitBy.CONSUMER, LimitBy.CREDENTIAL))
        .select_related("route", "service", "consumer")
    )
    credentials = [("key", key.prefix, f"API key {key.prefix}") for key in consumer.api_keys.all()]
    credentials += [
        ("jwt", jwt.key, f"JWT credential {jwt.key}") for jwt in consumer.jwt_credentials.all()
    ]
    rows = []
    for limit in limits:
        seconds = limit.period_seconds
        if limit.limit_by == LimitBy.CONSUMER:
            rows.append(
                (limit, "consumer", counter_key(limit.pk, seconds, consumer_part(consumer.pk)))
            )
            continue
        for kind, credential, label in credentials:
            key = counter_key(limit.pk, seconds, credential_part(kind, credential))
            rows.append((limit, label, key))
    return rows


def consumer_quota(consumer: Consumer) -> tuple[list[QuotaRow], str]:
    """The consumer's counters with what remains of each, and an error when Redis cannot say."""
    counted = _counted_keys(consumer)
    if not counted:
        return [], ""
    specs = [LimitSpec(key, limit.limit, limit.period_seconds) for limit, _, key in counted]
    try:
        statuses = runtime.limiter.peek(specs).statuses
    except LimiterUnavailable as exc:
        return [QuotaRow(limit, label, key) for limit, label, key in counted], str(exc)
    rows = [
        QuotaRow(limit, label, key, status.remaining, math.ceil(status.reset))
        for (limit, label, key), status in zip(counted, statuses, strict=True)
    ]
    return rows, ""


def reset_consumer_counters(consumer: Consumer) -> int:
    """Forget every counter of this consumer; returns how many existed (raises when Redis is down)."""
    keys = [key for _, _, key in _counted_keys(consumer)]
    return runtime.limiter.reset(keys) if keys else 0
