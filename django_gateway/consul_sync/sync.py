"""Import Consul's catalog as ``Service`` and ``Route`` rows (``gateway_sync_services``, the admin).

The steps are separate so each front end and test can use any of them:

* :func:`read_catalog` asks Consul for ``{name: [tags]}`` (one ``/v1/catalog/services`` call) and
  :func:`filter_catalog` keeps the services carrying every ``--tag`` (AND, case-insensitive, as
  Consul's own ``?tag`` filter);
* :func:`~.tags.parse_tags` turns one service's tags into route declarations (the grammar is in
  ``docs/consul-sync.md``);
* :func:`plan_sync` compares the catalog with the database and returns a :class:`~.plan.SyncPlan`,
  the diff and the problems (name collisions, invalid tags, path conflicts), writing nothing;
  which row each declared route is, and the conflict rules, are in :mod:`.routeplan`;
* :func:`apply_plan` writes a plan in one transaction and bumps the configuration version once;
* :func:`watch_catalog` runs blocking queries on the catalog (CONSUL_FACTS §1.7: index reset,
  back-off, a token bucket) and calls back on every change until its stop event is set.

``django_gateway.operations.sync_from_consul`` chains the read, the plan and the write for the
command and the admin, and turns a Consul failure into one sentence a user can act on.

Ownership: rows with ``source="operator"`` are never written. On ``source="consul"`` services the
sync owns ``discovery``, ``consul_service``, ``consul_datacenter``, ``enabled`` and (with a
``gateway.scheme`` tag) ``protocol``; on routes it owns what tags declare (paths, hosts, methods,
priority, strip_path, preserve_host) and ``enabled``, unless ``operator_override`` is set. Every
other field stays as an operator tuned it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.db import models, transaction
from django.utils import timezone
from django.utils.text import slugify

from ..discovery.client import explain_error
from ..discovery.watcher import follow
from ..metrics import Counters
from ..models import Route, Service
from ..models.services import Discovery, Source
from ..revision import bump_revision
from .plan import Change, SyncPlan, update, validated
from .routeplan import Slot, find_conflicts, match_routes, plan_routes
from .tags import Problem, parse_tags

__all__ = [
    "Change",
    "SyncPlan",
    "apply_plan",
    "filter_catalog",
    "plan_sync",
    "read_catalog",
    "sync_services",
    "watch_catalog",
]

logger = logging.getLogger(__name__)

#: Consul lists its own servers as the service "consul"; never an upstream for the gateway.
CONSUL_ITSELF = "consul"

Catalog = Mapping[str, list[str]]


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
    slots: list[Slot] = []
    unclaimed: list[Route] = []
    for consul_name in sorted(catalog):
        row = _plan_service(plan, consul_name, datacenter, by_name, rows)
        if row is None:
            continue
        declaration = parse_tags(consul_name, catalog[consul_name])
        plan.problems.extend(declaration.problems)
        wanted = {"discovery": Discovery.CONSUL, "enabled": True}
        if declaration.protocol:
            wanted["protocol"] = declaration.protocol
        if row.pk is None:  # new: django-stubs does not model a pk that is None until saved
            for key, value in wanted.items():  # type: ignore[unreachable]
                setattr(row, key, value)
            if not validated(plan, consul_name, row, Change("create", row)):
                del rows[consul_name]
                continue
        else:
            update(plan, row, wanted)
        found, left = match_routes(consul_name, row, declaration)
        slots += found
        unclaimed += left
    conflicted = find_conflicts(plan, slots, [r.pk for r in rows.values() if r.pk])
    taken = set(Route.objects.values_list("name", flat=True))
    plan_routes(plan, slots, unclaimed, conflicted, taken)
    if prune:
        gone = Service.objects.filter(source=Source.CONSUL, consul_datacenter=datacenter).exclude(
            pk__in=[r.pk for r in rows.values() if r.pk]
        )
        for service in gone:
            if (service.consul_service or service.name) in catalog:
                continue  # present but not written this run (reported)
            update(plan, service, {"enabled": False}, action="disable")
            for route in service.routes.filter(source=Source.CONSUL, enabled=True):
                if route.operator_override:
                    plan.kept.append(f"{route.name} (operator override)")
                else:
                    update(plan, route, {"enabled": False}, action="disable")
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
            model: type[models.Model] = type(change.obj)  # Route or Service
            if change.action == "create":
                model._default_manager.bulk_create([change.obj])
            else:
                model._default_manager.filter(pk=change.obj.pk).update(
                    **change.values, updated_at=now
                )
                for key, value in change.values.items():
                    setattr(change.obj, key, value)
        transaction.on_commit(bump_revision, robust=True)


def read_catalog(
    client: Any, *, tags: Iterable[str] = (), datacenter: str = ""
) -> dict[str, list[str]]:
    """``{name: [tags]}`` from ``/v1/catalog/services``, filtered by :func:`filter_catalog`.
    Raises what the client raises; :func:`~.client.explain_error` says it in a sentence."""
    _index, services = client.catalog.services(dc=datacenter or None)
    return filter_catalog(_catalog_object(services), tags)


def _catalog_object(services: Any) -> dict[str, list[str]]:
    if not isinstance(services, dict):
        raise ValueError(f"Consul answered {type(services).__name__}, not an object")
    return services


def sync_services(
    catalog: Catalog,
    *,
    tags: Iterable[str] = (),
    datacenter: str = "",
    prune: bool = False,
    dry_run: bool = False,
) -> SyncPlan:
    """Plan ``catalog`` (as :func:`read_catalog` or :func:`watch_catalog` got it) and, unless
    ``dry_run``, apply it: behind the command, its ``--watch`` loop and the admin's "Sync from
    Consul now"."""
    with transaction.atomic():
        plan = plan_sync(filter_catalog(catalog, tags), datacenter=datacenter, prune=prune)
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
    counters: Counters,
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
        return raw_index, _catalog_object(services)

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
        counters=counters,
    )


def _log_error(exc: Exception) -> None:
    logger.warning("Consul catalog watch: %s", explain_error(exc))
