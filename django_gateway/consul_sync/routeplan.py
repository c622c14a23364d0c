"""Which route row each route a Consul service's tags declare *is*, and what a sync writes to it.

**Identity.** A synced route is what it declares (its hosts, paths and methods), never its
position among the service's tags: otherwise adding a tag shifts every route after it, and an
operator's authentication, groups, IP rules, timeouts and limits move to another path with the
row they were set on. For each declaration of a service, in tag order, the row that is it among
the service's ``source="consul"`` rows is, first match wins:

1. the row with exactly the declared hosts, paths and methods (an ``operator_override`` row
   first, so a duplicate an older version created heals);
2. the row sharing most declared paths, on the same hosts first: a route that gained or lost a
   path, or changed its methods or hosts, keeps its row, and the operator's settings stay on the
   paths they were set for;
3. the ``operator_override`` row bearing the declaration's name (below): an overridden row
   whose paths the operator changed still holds its declaration, so no second route is created
   next to it (a name never makes a row the sync writes to change its paths).

A declaration without a row gets a new one; when a route is split in two (a path moves from the
``gateway.*`` route to its own ``urlprefix-`` tag, say), the part without the old row is
reported as ``moved``, since the operator's settings stayed on the old row. A row no declaration
claims is disabled (never deleted), or left alone with ``operator_override``.

**Names.** New rows are named after what they declare: ``consul-<service>`` for the ``gateway.*``
route, ``consul-<service>-<slug of host and path>`` for a ``urlprefix-`` tag, with an 8-digit
hash of the declaration instead when that name is taken or longer than ``Route.name`` allows.
Existing rows keep their names; a name only helps rule 3, it never decides what a row routes.

**Conflicts.** Each (hosts, path) pair is claimed once: by one declaration the sync writes, or by
one enabled route it does not rewrite (an operator's route, an overridden route, a route of a
service outside this run). A pair claimed twice, by two services or twice within one service, is
reported for each declaring service and neither declaration is written.

**Never silently dropped.** A declaration whose row has ``operator_override`` is left as the
operator set it; if that row is disabled or no longer routes every declared path (on the declared
hosts and methods), the sync reports the declaration as ``not routed``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..models import Route, Service
from ..models.services import Source
from .plan import Change, SyncPlan, update, update_checked, validated
from .tags import URLPREFIX, Declaration, Problem, RouteSpec

NAME_MAX = Route.NAME_MAX_LENGTH

Key = tuple[frozenset[str], str]  # (hosts, path): what two routes must not both claim


@dataclass(eq=False)  # hashed by identity: a set of slots is a set of declarations
class Slot:
    """One route declaration of a Consul service and the row that is it (``None``: none yet)."""

    consul_name: str
    service: Service
    spec: RouteSpec
    row: Route | None = None
    moved_from: Route | None = None  # no row of its own, but this one routed its paths until now

    @property
    def overridden(self) -> bool:
        return self.row is not None and self.row.operator_override

    @property
    def written(self) -> bool:
        """Whether the sync writes this declaration (if no conflict stops it)."""
        return not self.spec.error and not self.overridden

    def keys(self) -> set[Key]:
        return _keys(self.spec.paths, self.spec.hosts)


def _keys(paths: Iterable[str], hosts: Iterable[str]) -> set[Key]:
    frozen = frozenset(hosts)
    return {(frozen, path) for path in paths}


def describe(paths: Iterable[str], hosts: Iterable[str], methods: Iterable[str] = ()) -> str:
    """``/a, /b on api.example.com for GET``: what a route or declaration covers, for reports."""
    text = f"{', '.join(paths) or 'any path'} on {', '.join(sorted(hosts)) or 'any host'}"
    methods = sorted(methods)
    return f"{text} for {','.join(methods)}" if methods else text


def route_names(service: str, spec: RouteSpec) -> tuple[str, ...]:
    """The name a new row for ``spec`` gets, then the hashed one used when that is taken."""
    base, slot = f"consul-{service}", ""
    if spec.kind == URLPREFIX:
        slot = (spec.hosts[0] if spec.hosts else "") + spec.paths[0]
        base = f"{base}-{re.sub(r'[^a-z0-9]+', '-', slot.lower()).strip('-') or 'root'}"
    digest = hashlib.sha1(f"{spec.kind}:{slot}".encode()).hexdigest()[:8]
    hashed = f"{base[: NAME_MAX - 9].rstrip('-')}-{digest}"
    return (base, hashed) if len(base) <= NAME_MAX else (hashed,)


def _identity(
    paths: Iterable[str], hosts: Iterable[str], methods: Iterable[str]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return tuple(sorted(paths)), tuple(sorted(hosts)), tuple(sorted(methods))


def match_routes(
    consul_name: str, service: Service, declaration: Declaration
) -> tuple[list[Slot], list[Route]]:
    """The service's declarations paired with their rows by the three rules of the module
    docstring, and the service's synced rows no declaration claims."""
    slots = [
        Slot(consul_name, service, spec)
        for spec in declaration.routes
        if spec.paths or spec.hosts  # a tag too broken to say what it routes has no row
    ]
    rows = list(Route.objects.filter(service=service, source=Source.CONSUL)) if service.pk else []
    free = sorted(rows, key=lambda r: (not r.operator_override, r.name))

    def take(slot: Slot, row: Route) -> None:
        slot.row = row
        free.remove(row)

    for slot in slots:
        wanted = _identity(slot.spec.paths, slot.spec.hosts, slot.spec.methods)
        row = next((r for r in free if _identity(r.paths, r.hosts, r.methods) == wanted), None)
        if row is not None:
            take(slot, row)
    ranked = []
    for position, slot in enumerate(slots):
        for row in free if slot.row is None else ():
            shared = len(set(slot.spec.paths) & set(row.paths))
            same_hosts = sorted(row.hosts) == sorted(slot.spec.hosts)
            if shared:
                ranked.append((-shared if same_hosts else 0, -shared, position, row.name, row))
    for *_, position, _name, row in sorted(ranked, key=lambda entry: entry[:4]):
        if slots[position].row is None and row in free:
            take(slots[position], row)
    for slot in slots:
        names = route_names(service.name, slot.spec) if slot.row is None else ()
        row = next((r for r in free if r.operator_override and r.name in names), None)
        if row is not None:
            take(slot, row)
    for slot in slots:
        if slot.row is None:  # a route split in two: one part keeps the row, one needs a new one
            slot.moved_from = next(
                (r for r in rows if r.enabled and _keys(r.paths, r.hosts) & slot.keys()), None
            )
    return slots, free


def find_conflicts(plan: SyncPlan, slots: Sequence[Slot], services: Iterable[int]) -> set[Slot]:
    """The declarations holding a (hosts, path) pair something else claims too, each reported
    once per declaring service; ``services`` are the ids of the services this run rewrites."""
    claims: dict[Key, list[Slot | Route]] = {}
    for slot in slots:
        for key in slot.keys() if slot.written else ():
            claims.setdefault(key, []).append(slot)
    others = (  # enabled routes this run does not rewrite
        Route.objects.filter(enabled=True)
        .exclude(service__in=list(services), source=Source.CONSUL, operator_override=False)
        .select_related("service")
    )
    for route in others:
        for key in _keys(route.paths, route.hosts) & claims.keys():
            claims[key].append(route)
    conflicted: set[Slot] = set()
    for (hosts, path), claimants in claims.items():
        if len(claimants) < 2:
            continue
        declared = [c for c in claimants if isinstance(c, Slot)]
        names = " and ".join(dict.fromkeys(_label(c, declared) for c in claimants))
        detail = f"{describe([path], hosts)} is claimed by {names}; not written by this sync"
        for consul_name in dict.fromkeys(s.consul_name for s in declared):
            plan.problems.append(Problem("conflict", consul_name, detail))
        conflicted.update(declared)
    return conflicted


def _label(claimant: Slot | Route, declared: Sequence[Slot]) -> str:
    if isinstance(claimant, Route):
        return f"route {claimant.name} (service {claimant.service.name})"
    if sum(s.consul_name == claimant.consul_name for s in declared) > 1:
        return f"{claimant.consul_name} ({claimant.spec.label})"  # twice by one service
    return claimant.consul_name


def plan_routes(
    plan: SyncPlan,
    slots: Sequence[Slot],
    unclaimed: Iterable[Route],
    conflicted: set[Slot],
    taken: set[str],
) -> None:
    """Plan the writes: create or update each declaration's row, leave overridden rows alone
    (reporting what they leave unrouted), disable the rows no declaration claims."""
    for slot in slots:
        if slot.spec.error or slot in conflicted:
            continue  # reported; its row, if any, stays as it was
        if slot.row is not None and slot.row.operator_override:
            plan.kept.append(f"{slot.row.name} (operator override)")
            _report_unrouted(plan, slot, slot.row)
            continue
        wanted = {**slot.spec.values(), "enabled": True}
        if slot.row is not None:
            update_checked(plan, slot.consul_name, slot.row, wanted)
        else:
            _create(plan, slot, wanted, taken)
    for row in unclaimed:
        if not row.enabled:
            continue
        if row.operator_override:
            plan.kept.append(f"{row.name} (operator override)")
        else:  # its tag is gone: disabled, never deleted
            update(plan, row, {"enabled": False}, action="disable")


def _create(plan: SyncPlan, slot: Slot, wanted: dict[str, Any], taken: set[str]) -> None:
    names = route_names(slot.service.name, slot.spec)
    name = next((n for n in names if n not in taken), None)
    if name is None:
        detail = f"route names {' and '.join(names)} are taken; {slot.spec.label} not written"
        plan.problems.append(Problem("name collision", slot.consul_name, detail))
        return
    route = Route(name=name, service=slot.service, source=Source.CONSUL, **wanted)
    if not validated(plan, slot.consul_name, route, Change("create", route)):
        return
    taken.add(name)
    if slot.moved_from is not None:
        spec = slot.spec
        detail = (
            f"{describe(spec.paths, spec.hosts, spec.methods)} ({spec.label}) was routed by "
            f"route {slot.moved_from.name}, which keeps its settings; the new route {name} "
            "starts from the defaults (authentication, groups, IP rules, limits)"
        )
        plan.problems.append(Problem("moved", slot.consul_name, detail))


def _report_unrouted(plan: SyncPlan, slot: Slot, row: Route) -> None:
    spec = slot.spec
    any_method = not row.methods  # else it must name every declared method (none: any)
    covered = (
        sorted(row.hosts) == sorted(spec.hosts)
        and set(spec.paths) <= set(row.paths)
        and (any_method or set(row.methods) >= set(spec.methods or ["*"]))
    )
    if row.enabled and covered:
        return
    routes = describe(row.paths, row.hosts, row.methods)
    how = f"routes {routes} instead" if row.enabled else "is disabled"
    detail = (
        f"{describe(spec.paths, spec.hosts, spec.methods)} ({spec.label}): route {row.name} "
        f"has operator override and {how}"
    )
    plan.problems.append(Problem("not routed", slot.consul_name, detail))
