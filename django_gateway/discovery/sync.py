"""Import Consul's catalog as ``Service`` and ``Route`` rows (``gateway_sync_services``, the admin).

The steps are separate so each front end and test can use any of them:

* :func:`read_catalog` asks Consul for ``{name: [tags]}`` (one ``/v1/catalog/services`` call) and
  :func:`filter_catalog` keeps the services carrying every ``--tag`` (AND, case-insensitive, as
  Consul's own ``?tag`` filter);
* :func:`parse_tags` turns one service's tags into route declarations (the grammar is in
  ``docs/consul-sync.md``);
* :func:`plan_sync` compares the catalog with the database and returns a :class:`SyncPlan`, the diff
  and the problems (name collisions, invalid tags, path conflicts), writing nothing;
* :func:`apply_plan` writes a plan in one transaction and bumps the configuration version once;
* :func:`watch_catalog` runs blocking queries on the catalog (CONSUL_FACTS §1.7: index reset,
  back-off, a token bucket) and calls back on every change until its stop event is set.

Ownership: rows with ``source="operator"`` are never written. On ``source="consul"`` services the
sync owns ``discovery``, ``consul_service``, ``consul_datacenter``, ``enabled`` and (with a
``gateway.scheme`` tag) ``protocol``; on routes it owns what tags declare (paths, hosts, methods,
priority, strip_path, preserve_host) and ``enabled``, unless ``operator_override`` is set. Every
other field stays as an operator tuned it.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone
from django.utils.text import slugify

from ..models import Route, Service
from ..models.services import Discovery, Source
from ..versioning import bump_version
from .tags import Declaration, Problem, parse_tags
from .watcher import describe_error, follow

logger = logging.getLogger(__name__)

#: Consul lists its own servers as the service "consul"; never an upstream for the gateway.
CONSUL_ITSELF = "consul"

Catalog = Mapping[str, list[str]]


# --- the plan --------------------------------------------------------------------------------


@dataclass
class Change:
    action: str  # "create", "update", "disable"
    obj: models.Model
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
            return f"{head} (Consul service {self.obj.consul_service!r})"  # type: ignore[attr-defined]
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


def filter_catalog(catalog: Catalog, tags: Iterable[str] = ()) -> dict[str, list[str]]:
    """The services carrying every one of ``tags`` (case-insensitive), Consul itself left out."""
    wanted = {t.lower() for t in tags}
    return {
        name: list(service_tags)
        for name, service_tags in catalog.items()
        if name != CONSUL_ITSELF and wanted <= {t.lower() for t in service_tags}
    }


def plan_sync(catalog: Catalog, *, datacenter: str = "", prune: bool = False) -> SyncPlan:
    """What a sync of ``catalog`` (already filtered) would change; writes nothing."""
    plan = SyncPlan(services=len(catalog))
    by_name = {s.name: s for s in Service.objects.all()}
    rows: dict[str, Service] = {}  # Consul name -> row (new or existing) the sync may write
    declarations: dict[str, Declaration] = {}
    for consul_name in sorted(catalog):
        row = _plan_service(plan, consul_name, datacenter, by_name, rows)
        if row is None:
            continue
        declaration = parse_tags(consul_name, catalog[consul_name])
        plan.problems.extend(declaration.problems)
        declarations[consul_name] = declaration
        wanted = {"discovery": Discovery.CONSUL, "enabled": True}
        if declaration.protocol:
            wanted["protocol"] = declaration.protocol
        if row.pk is None:
            for key, value in wanted.items():
                setattr(row, key, value)
            if not _validated(plan, consul_name, row, Change("create", row)):
                del rows[consul_name], declarations[consul_name]
        else:
            _update(plan, row, wanted)
    conflicts = _conflicts(plan, declarations, rows)
    taken = set(Route.objects.values_list("name", flat=True))
    for consul_name, declaration in declarations.items():
        _plan_routes(plan, consul_name, rows[consul_name], declaration, conflicts, taken)
    if prune:
        gone = Service.objects.filter(source=Source.CONSUL, consul_datacenter=datacenter).exclude(
            pk__in=[r.pk for r in rows.values() if r.pk]
        )
        for service in gone:
            if (service.consul_service or service.name) in catalog:
                continue  # present but not written this run (reported)
            _update(plan, service, {"enabled": False}, action="disable")
            for route in service.routes.filter(source=Source.CONSUL, enabled=True):
                if route.operator_override:
                    plan.kept.append(f"{route.name} (operator override)")
                else:
                    _update(plan, route, {"enabled": False}, action="disable")
    return plan


def _plan_service(
    plan: SyncPlan,
    consul_name: str,
    datacenter: str,
    by_name: dict[str, Service],
    rows: dict[str, Service],
) -> Service | None:
    name = slugify(consul_name.replace(".", "-"))[:100]  # "orders.v2" -> "orders-v2"
    if not name:
        plan.problems.append(Problem("name collision", consul_name, "no usable slug; skipped"))
        return None
    claimed = [c for c, r in rows.items() if r.name == name]
    if claimed:
        detail = f"slug {name!r} already taken by Consul service {claimed[0]!r}; skipped"
        plan.problems.append(Problem("name collision", consul_name, detail))
        return None
    row = by_name.get(name)
    if row is None:
        row = Service(
            name=name,
            consul_service=consul_name,
            consul_datacenter=datacenter,
            source=Source.CONSUL,
        )
    elif row.source != Source.CONSUL:
        detail = f"an operator-created service named {name!r} exists; not imported"
        plan.problems.append(Problem("name collision", consul_name, detail))
        return None
    elif (row.consul_service or row.name) != consul_name or row.consul_datacenter != datacenter:
        detail = (
            f"service {name!r} was imported from Consul service "
            f"{row.consul_service or row.name!r} (datacenter {row.consul_datacenter or 'default'!r})"
            "; skipped"
        )
        plan.problems.append(Problem("name collision", consul_name, detail))
        return None
    rows[consul_name] = row
    return row


def _update(
    plan: SyncPlan, obj: models.Model, wanted: Mapping[str, Any], action: str = "update"
) -> Change | None:
    values = {k: v for k, v in wanted.items() if getattr(obj, k) != v}
    if not values:
        return None
    change = Change(action, obj, values, {k: getattr(obj, k) for k in values})
    plan.changes.append(change)
    return change


def _validated(plan: SyncPlan, consul_name: str, obj: models.Model, change: Change) -> bool:
    """Run the model's own validation on the row as it would be written."""
    exclude = ["service"] if isinstance(obj, Route) and obj.service.pk is None else None
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


def _conflicts(
    plan: SyncPlan, declarations: Mapping[str, Declaration], rows: Mapping[str, Service]
) -> set[tuple[str, frozenset[str], str]]:
    """``(service, hosts, path)`` keys claimed by more than one owner: two Consul services in
    this run, or a Consul service and an enabled route this run does not rewrite (an operator's
    route, a route kept by ``operator_override``, a route of a service outside this run).
    Routes holding such a key are neither created nor changed."""
    claims: dict[tuple[frozenset[str], str], set[str]] = {}
    for consul_name, declaration in declarations.items():
        for spec in declaration.routes:
            for path in spec.paths if not spec.error else ():
                claims.setdefault((frozenset(spec.hosts), path), set()).add(consul_name)
    owners = {r.pk: consul_name for consul_name, r in rows.items() if r.pk}
    rewritten = Route.objects.filter(
        service__in=list(owners), source=Source.CONSUL, operator_override=False
    )
    others = Route.objects.filter(enabled=True).exclude(pk__in=rewritten).select_related("service")
    for route in others:
        owner = owners.get(route.service_id, f"route {route.name} (service {route.service.name})")
        for path in route.paths:
            if (key := (frozenset(route.hosts), path)) in claims:
                claims[key].add(owner)
    conflicts = set()
    for (hosts, path), claimants in sorted(
        claims.items(), key=lambda kv: (kv[0][1], sorted(kv[0][0]))
    ):
        if len(claimants) < 2:
            continue
        where = f"{path} on {', '.join(sorted(hosts)) or 'any host'}"
        names = " and ".join(sorted(claimants))
        for claimant in sorted(c for c in claimants if c in declarations):
            conflicts.add((claimant, hosts, path))
            detail = f"{where} is claimed by {names}; not written by this sync"
            plan.problems.append(Problem("conflict", claimant, detail))
    return conflicts


def route_names(service: str, count: int) -> list[str]:
    base = f"consul-{service}"[:96]
    return [base if i == 0 else f"{base}-{i + 1}" for i in range(count)]


def _plan_routes(
    plan: SyncPlan,
    consul_name: str,
    service: Service,
    declaration: Declaration,
    conflicts: set[tuple[str, frozenset[str], str]],
    taken: set[str],
) -> None:
    existing = {r.name: r for r in Route.objects.filter(service=service)} if service.pk else {}
    names = route_names(service.name, len(declaration.routes))
    for name, spec in zip(names, declaration.routes, strict=True):
        route = existing.get(name)
        if spec.error or any(
            (consul_name, frozenset(spec.hosts), p) in conflicts for p in spec.paths
        ):
            continue
        if route is None and name in taken:
            detail = f"route name {name!r} is taken by a route of another service; not written"
            plan.problems.append(Problem("name collision", consul_name, detail))
            continue
        if route is not None and route.source != Source.CONSUL:
            detail = f"route {name!r} was created by an operator; not changed"
            plan.problems.append(Problem("name collision", consul_name, detail))
            continue
        if route is not None and route.operator_override:
            plan.kept.append(f"{name} (operator override)")
            continue
        wanted = {**spec.values(), "enabled": True}
        if route is None:
            route = Route(name=name, service=service, source=Source.CONSUL, **wanted)
            if _validated(plan, consul_name, route, Change("create", route)):
                taken.add(name)
            continue
        probe = copy.copy(route)  # validated as it would be saved, the row itself untouched
        for key, value in wanted.items():
            setattr(probe, key, value)
        try:
            probe.full_clean()
        except ValidationError as exc:
            plan.problems.append(
                Problem("invalid route", consul_name, f"{name}: {'; '.join(exc.messages)}; skipped")
            )
            continue
        _update(plan, route, {k: getattr(probe, k) for k in wanted})
    for name, route in existing.items():
        if name in names or route.source != Source.CONSUL or not route.enabled:
            continue
        if route.operator_override:
            plan.kept.append(f"{name} (operator override)")
        else:  # its tag is gone: disabled, never deleted
            _update(plan, route, {"enabled": False}, action="disable")


# --- writing -----------------------------------------------------------------------------------


def apply_plan(plan: SyncPlan) -> None:
    """Write the plan in one transaction; the configuration version is bumped once, on commit.

    Rows are written with ``bulk_create``/``update`` (which send no signals) so a sync of many
    services costs every process one snapshot rebuild, not one per row.
    """
    if not plan.changes:
        return
    now = timezone.now()
    with transaction.atomic():
        for change in sorted(plan.changes, key=lambda c: (c.kind != "service", c.action)):
            model = type(change.obj)
            if change.action == "create":
                model.objects.bulk_create([change.obj])
            else:
                model.objects.filter(pk=change.obj.pk).update(**change.values, updated_at=now)
                for key, value in change.values.items():
                    setattr(change.obj, key, value)
        transaction.on_commit(bump_version, robust=True)


def read_catalog(
    client: Any, *, tags: Iterable[str] = (), datacenter: str = ""
) -> dict[str, list[str]]:
    """``{name: [tags]}`` from ``/v1/catalog/services``, filtered by :func:`filter_catalog`."""
    _index, services = client.catalog.services(dc=datacenter or None)
    return filter_catalog(services, tags)


def default_client() -> Any:
    from .client import consul_client

    return consul_client()


def sync_services(
    client: Any = None,
    *,
    tags: Iterable[str] = (),
    datacenter: str = "",
    prune: bool = False,
    dry_run: bool = False,
    catalog: Catalog | None = None,
) -> SyncPlan:
    """Read the catalog (unless given), plan and, unless ``dry_run``, apply: the one operation
    behind the command, its ``--watch`` loop and the admin's "Sync from Consul now"."""
    if catalog is None:
        catalog = read_catalog(client or default_client(), tags=tags, datacenter=datacenter)
    else:
        catalog = filter_catalog(catalog, tags)
    with transaction.atomic():
        plan = plan_sync(catalog, datacenter=datacenter, prune=prune)
        if not dry_run:
            apply_plan(plan)
    return plan


# --- watching ------------------------------------------------------------------------------------


def watch_catalog(
    client: Any,
    on_change: Callable[[dict[str, list[str]]], None],
    *,
    stop: threading.Event,
    datacenter: str = "",
    on_error: Callable[[Exception], None] | None = None,
) -> None:
    """Call ``on_change(catalog)`` with the first answer and every changed one until ``stop``.

    The loop follows the same CONSUL_FACTS §1.7 rules as the instance watchers
    (:mod:`.watcher`): index reset when it goes backwards and kept at least 1, a token bucket
    (burst 2, ``CONSUL_MIN_QUERY_INTERVAL``), ``CONSUL_WAIT`` per query, and a jittered
    exponential back-off between ``CONSUL_BACKOFF_MIN`` and ``CONSUL_BACKOFF_MAX`` on errors
    (after which the index restarts at 0). ``stop`` is checked between queries, so it takes
    effect within ``CONSUL_WAIT`` seconds. An exception from ``on_change`` goes to ``on_error``
    (default: a log line) and the watch goes on.
    """
    report = on_error or _log_error
    last = None

    def query(index: int, wait: str) -> tuple[Any, Any]:
        raw_index, services = client.catalog.services(
            index=index or None, wait=wait, dc=datacenter or None
        )
        if not isinstance(services, dict):
            raise ValueError(f"Consul answered {type(services).__name__}, not an object")
        return raw_index, services

    def on_answer(raw_index: Any, services: dict[str, list[str]]) -> None:
        nonlocal last
        if services != last:
            last = services
            try:
                on_change(services)
            except Exception as exc:
                report(exc)

    follow(
        query,
        stop=stop,
        on_answer=on_answer,
        on_error=lambda exc, failures: report(exc),
        what="the catalog",
    )


def _log_error(exc: Exception) -> None:
    logger.warning("Consul catalog watch: %s", describe_error(exc))
