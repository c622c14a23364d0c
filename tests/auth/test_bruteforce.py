"""Repeated failed authentications from one address are answered with 429, keys never recorded."""

from __future__ import annotations

import contextlib

import pytest

from django_gateway.auth.bruteforce import FailureCounter, failure_key
from django_gateway.exceptions import TooManyRequests
from django_gateway.runtime import runtime
from django_gateway.throttling.base import LimiterUnavailable


@pytest.fixture
def counter(settings, monkeypatch):
    settings.GATEWAY = {**settings.GATEWAY, "AUTH_FAILURE_LIMIT": 3, "AUTH_FAILURE_WINDOW": 60}
    counter = FailureCounter(lambda: runtime.limiter)
    now = [1000.0]
    monkeypatch.setattr(counter, "clock", lambda: now[0])
    counter.now = now
    yield counter
    with contextlib.suppress(LimiterUnavailable):
        runtime.limiter.reset([failure_key(ip) for ip in ("198.51.100.1", "198.51.100.2")])


def test_blocked_after_the_limit_until_the_window_ends(counter):
    for _ in range(2):
        counter.record_failure("198.51.100.1")
        counter.check("198.51.100.1")
    counter.record_failure("198.51.100.1")
    with pytest.raises(TooManyRequests) as info:
        counter.check("198.51.100.1")
    assert info.value.retry_after == 60
    counter.check("198.51.100.2")  # another address is not affected
    counter.now[0] += 61
    counter.check("198.51.100.1")


def test_a_second_process_learns_from_the_shared_count(counter):
    other = FailureCounter(lambda: runtime.limiter)  # another worker: its own block list
    for _ in range(3):
        counter.record_failure("198.51.100.1")
    other.check("198.51.100.1")  # it has not seen a failure yet
    other.record_failure("198.51.100.1")  # the shared count is over the limit
    with pytest.raises(TooManyRequests):
        other.check("198.51.100.1")


def test_zero_turns_it_off(counter, settings):
    settings.GATEWAY = {**settings.GATEWAY, "AUTH_FAILURE_LIMIT": 0}
    for _ in range(10):
        counter.record_failure("198.51.100.1")
    counter.check("198.51.100.1")


def test_an_unreachable_cache_does_not_fail_requests(counter, settings):
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.1, "SOCKET_TIMEOUT": 0.1},
        },
    }
    settings.GATEWAY = {**settings.GATEWAY, "CACHE_ALIAS": "down"}
    for _ in range(5):
        counter.record_failure("198.51.100.1")
    counter.check("198.51.100.1")
