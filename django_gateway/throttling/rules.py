"""Which limits apply to a request, worked out once per configuration snapshot.

Rows become :class:`CompiledLimit` values; each route gets a :class:`RouteLimits` holding the
general limits (global, its service's, its own) and, for every consumer with a plan touching the
route, that consumer's list with the plan already applied. The request path then only does a
dictionary lookup: plans cost nothing per request.

A plan replaces the general limits with the same *scope* (the same route, the same service, or
global) and the same *period*; limits of other scopes or periods keep applying.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from ..config import CompiledLimit, RouteLimits
from ..models import RateLimit


def compile_limit(row: RateLimit) -> CompiledLimit:
    if row.route_id:
        scope = ("route", row.route_id)
    elif row.service_id:
        scope = ("service", row.service_id)
    else:
        scope = ("global", 0)
    header_key = ""
    if row.limit_by == "header":
        header_key = "HTTP_" + row.header_name.upper().replace("-", "_")
    return CompiledLimit(
        id=row.pk,
        limit=row.limit,
        period=row.period,
        seconds=row.period_seconds,
        limit_by=row.limit_by,
        header_key=header_key,
        fault_tolerant=row.fault_tolerant,
        scope=scope,
        consumer_id=row.consumer_id,
        limit_header=f"X-RateLimit-Limit-{row.period.capitalize()}",
        remaining_header=f"X-RateLimit-Remaining-{row.period.capitalize()}",
    )


class LimitIndex:
    """The enabled limits of one snapshot, by scope; :meth:`for_route` assembles a route's."""

    def __init__(self, limits: Iterable[CompiledLimit], consumer_ids: Iterable[int]) -> None:
        known = set(consumer_ids)  # plans of disabled consumers are left out with them
        self._by_scope: dict[tuple[str, int], list[CompiledLimit]] = defaultdict(list)
        for limit in limits:
            if limit.consumer_id is None or limit.consumer_id in known:
                self._by_scope[limit.scope].append(limit)

    def for_route(self, route_id: int, service_id: int) -> RouteLimits | None:
        applicable = [
            *self._by_scope.get(("global", 0), ()),
            *self._by_scope.get(("service", service_id), ()),
            *self._by_scope.get(("route", route_id), ()),
        ]
        if not applicable:
            return None
        general = tuple(limit for limit in applicable if limit.consumer_id is None)
        plans: dict[int, list[CompiledLimit]] = defaultdict(list)
        for limit in applicable:
            if limit.consumer_id is not None:
                plans[limit.consumer_id].append(limit)
        by_consumer = {
            consumer_id: _with_plan(general, plan) for consumer_id, plan in plans.items()
        }
        return RouteLimits(general, by_consumer)


def _with_plan(
    general: tuple[CompiledLimit, ...], plan: list[CompiledLimit]
) -> tuple[CompiledLimit, ...]:
    replaced = {(limit.scope, limit.period) for limit in plan}
    kept = [limit for limit in general if (limit.scope, limit.period) not in replaced]
    return (*kept, *plan)
