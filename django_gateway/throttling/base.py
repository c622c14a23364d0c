"""What every limiter takes and returns, so the Redis and the in-process engines are interchangeable.

A request is checked against all the limits that apply to it at once (:class:`LimitSpec`), and the
answer is one :class:`Decision`: allowed or not, with a :class:`LimitStatus` per limit for the
``RateLimit-*`` headers and a ``retry_after`` for ``Retry-After``. Both engines compute the same
flat reply (the one the Lua script returns) and decode it with :func:`decision_from_reply`, so the
in-process engine is a faithful cross-check of the script, not a second interpretation of it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

#: Each limit's window is divided into this many buckets (see :mod:`.redis_limiter`).
BUCKETS = 60


class LimiterUnavailable(Exception):
    """The limiter could not decide: Redis is down, refused, timed out, black-holed, gave a bad
    reply, or failed a moment ago and is being left alone (the breaker). The caller decides
    whether that lets traffic through (``fault_tolerant``) or answers 503."""


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """One limit that applies to this request: at most ``limit`` in any ``period`` seconds.

    ``key`` is the full Redis key (prefix included); the engine never derives keys, so the
    caller owns naming, prefixes and, on a Redis Cluster, the hash tag that keeps the keys of one
    request in one slot.
    """

    key: str
    limit: int
    period: int

    def __post_init__(self) -> None:
        if self.limit < 0 or self.period < 1:
            raise ValueError(f"A limit needs limit >= 0 and period >= 1 s, not {self!r}.")


@dataclass(frozen=True, slots=True)
class LimitStatus:
    spec: LimitSpec
    remaining: int  # after this request when it was admitted
    reset: float  # seconds until the oldest counted request stops counting


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    statuses: tuple[LimitStatus, ...]  # in the order of the specs
    retry_after: float  # seconds until the denying limits admit one more; 0 when allowed


class Limiter(ABC):
    """The interface the throttle stage uses; ``now_ms`` is injectable for tests."""

    def hit(
        self, specs: Sequence[LimitSpec], *, cost: int = 1, now_ms: int | None = None
    ) -> Decision:
        """Admit the request in every limit, or in none when any limit is exhausted."""
        return self._evaluate(specs, checked_cost(cost), now_ms)

    def peek(self, specs: Sequence[LimitSpec], *, now_ms: int | None = None) -> Decision:
        """What :meth:`hit` would decide for one more request, without counting anything."""
        return self._evaluate(specs, 0, now_ms)

    @abstractmethod
    def _evaluate(self, specs: Sequence[LimitSpec], cost: int, now_ms: int | None) -> Decision:
        """The algorithm; ``cost`` 0 decides for one request and counts nothing."""

    @abstractmethod
    def reset(self, keys: Sequence[str]) -> int:
        """Forget the counts under ``keys``; return how many existed."""


def checked_cost(cost: int) -> int:
    if cost < 0:
        raise ValueError("cost must be >= 0")
    return cost


def distinct_keys(specs: Sequence[LimitSpec]) -> None:
    """Refuse one key under two limits: a request would count twice in one window."""
    if len(specs) > 1 and len({spec.key for spec in specs}) != len(specs):
        raise ValueError(f"Each limit of a request needs its own key: {specs!r}")


def decision_from_reply(specs: Sequence[LimitSpec], reply: Sequence[int]) -> Decision:
    """Decode ``[allowed, retry_after_ms, remaining_1, reset_ms_1, remaining_2, …]``; anything
    else (a server that only looks like Redis) is :class:`LimiterUnavailable`."""
    try:
        if len(reply) != 2 + 2 * len(specs):
            raise LimiterUnavailable(f"Unexpected limiter reply of {len(reply)} items.")
        statuses = tuple(
            LimitStatus(spec, int(reply[2 + 2 * i]), reply[3 + 2 * i] / 1000)
            for i, spec in enumerate(specs)
        )
        return Decision(reply[0] == 1, statuses, reply[1] / 1000)
    except (TypeError, ValueError) as exc:
        raise LimiterUnavailable(f"Unexpected limiter reply: {reply!r}") from exc
