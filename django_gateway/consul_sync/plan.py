"""What a Consul sync would write: :class:`SyncPlan`, its :class:`Change`\\ s and problems.

The planners (:mod:`.sync` for services, :mod:`.routeplan` for routes) only add to a plan; writing
it is :func:`.sync.apply_plan`'s job. Every row a plan creates or changes has been through the
model's own ``full_clean()`` first (:func:`validated`, :func:`update_checked`), so a tag can never
make the writer fail halfway.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from ..models import Route, Service
from .tags import Problem


@dataclass
class Change:
    action: str  # "create", "update", "disable"
    obj: Route | Service
    values: dict[str, Any] = field(default_factory=dict)  # update/disable: the new values
    before: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "route" if isinstance(self.obj, Route) else "service"

    def __str__(self) -> str:
        sign = {"create": "+", "update": "~", "disable": "-"}[self.action]
        head = f"{sign} {self.kind} {self.obj}"
        if self.action == "create":
            if isinstance(self.obj, Route):
                return f"{head} -> {self.obj.service.name}: {_describe_route(self.obj.__dict__)}"
            return f"{head} (Consul service {self.obj.consul_service!r})"
        changed = ", ".join(f"{k}: {self.before.get(k)!r} -> {v!r}" for k, v in self.values.items())
        return f"{head}: {changed}"


def _describe_route(values: Mapping[str, Any]) -> str:
    parts = [f"paths={','.join(values['paths']) or '-'}"]
    if values["hosts"]:
        parts.append(f"hosts={','.join(values['hosts'])}")
    if values["methods"]:
        parts.append(f"methods={','.join(values['methods'])}")
    for key in ("priority", "strip_path", "preserve_host"):
        parts.append(f"{key}={values[key]}")
    return " ".join(parts)


@dataclass
class SyncPlan:
    changes: list[Change] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # routes left alone: operator_override
    services: int = 0  # Consul services considered

    def summary(self) -> str:
        if not self.changes:
            return f"Nothing to change: {self.services} Consul service(s) already in sync."
        counts: dict[str, int] = {}
        for change in self.changes:
            key = f"{change.action}d {change.kind}"
            counts[key] = counts.get(key, 0) + 1
        return ", ".join(f"{key}s: {n}" for key, n in counts.items()).capitalize() + "."


def update(
    plan: SyncPlan, obj: Route | Service, wanted: Mapping[str, Any], action: str = "update"
) -> Change | None:
    """Plan setting ``wanted`` on ``obj`` (only the values that differ); nothing if none do."""
    values = {k: v for k, v in wanted.items() if getattr(obj, k) != v}
    if not values:
        return None
    change = Change(action, obj, values, {k: getattr(obj, k) for k in values})
    plan.changes.append(change)
    return change


def validated(plan: SyncPlan, consul_name: str, obj: Route | Service, change: Change) -> bool:
    """Plan ``change`` if the model's own validation accepts ``obj`` as it would be written;
    otherwise report why (``invalid route``/``invalid service``) and plan nothing."""
    new_service = isinstance(obj, Route) and obj.service.pk is None  # None until saved
    exclude = ["service"] if new_service else None
    try:
        obj.full_clean(exclude=exclude)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{name}: {' '.join(messages)}" for name, messages in exc.message_dict.items()
        )
        kind = "invalid route" if isinstance(obj, Route) else "invalid service"
        plan.problems.append(Problem(kind, consul_name, f"{obj}: {reasons}; skipped"))
        return False
    plan.changes.append(change)
    return True


def update_checked(
    plan: SyncPlan, consul_name: str, route: Route, wanted: Mapping[str, Any]
) -> None:
    """:func:`update` an existing route, once a copy with ``wanted`` set passes validation (the
    row itself stays untouched until the plan is applied)."""
    probe = copy.copy(route)
    for key, value in wanted.items():
        setattr(probe, key, value)
    try:
        probe.full_clean()
    except ValidationError as exc:
        detail = f"{route.name}: {'; '.join(exc.messages)}; skipped"
        plan.problems.append(Problem("invalid route", consul_name, detail))
        return
    update(plan, route, {k: getattr(probe, k) for k in wanted})
