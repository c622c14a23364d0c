"""``manage.py gateway_sync_services``: import Consul's catalog as services and routes."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from ...consul_sync.sync import SyncPlan, sync_services, watch_catalog
from ...discovery.client import consul_client, explain_error
from ...operations import ConsulSyncError, sync_from_consul
from ...runtime import runtime


class Command(BaseCommand):
    help = (
        "Import every Consul catalog service as a service with discovery 'consul', and the routes "
        "its gateway.* or urlprefix- tags declare. Rows created by operators are never changed. "
        "See docs/consul-sync.md."
    )
    #: ``call_command(..., stop=event)`` ends ``--watch`` when the event is set (tests).
    stealth_options = ("stop",)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Print what would change; write nothing."
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Disable (never delete) imported services no longer in Consul, and their routes.",
        )
        parser.add_argument(
            "--tag",
            action="append",
            default=[],
            metavar="TAG",
            help="Only services carrying this tag (repeat: all of them; case-insensitive).",
        )
        parser.add_argument(
            "--datacenter",
            default="",
            metavar="DC",
            help="Read this datacenter's catalog (default: the agent's own).",
        )
        parser.add_argument(
            "--watch",
            action="store_true",
            help="Keep running: sync again whenever the catalog changes (blocking queries).",
        )
        parser.add_argument(
            "--strict",
            action="store_true",
            help="Exit with status 1 if anything was reported (conflicts, invalid tags, ...).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sync = {
            "tags": options["tag"],
            "datacenter": options["datacenter"],
            "prune": options["prune"],
            "dry_run": options["dry_run"],
        }
        if options["watch"]:
            self._watch(sync, options.get("stop") or threading.Event())
            return
        try:
            plan = sync_from_consul(**sync)
        except ConsulSyncError as exc:
            raise CommandError(str(exc)) from exc
        self._report(plan, options["dry_run"])
        reported = [p for p in plan.problems if p.kind != "ignored"]
        if options["strict"] and reported:
            raise CommandError(f"{len(reported)} problem(s) reported (--strict).")

    def _watch(self, sync: dict[str, Any], stop: threading.Event) -> None:
        try:
            client = consul_client()
        except ImproperlyConfigured as exc:
            raise CommandError(f"Cannot watch Consul: {explain_error(exc)}") from exc

        def on_change(catalog: dict[str, list[str]]) -> None:
            close_old_connections()  # a long-running loop outlives database connections
            self._report(sync_services(catalog, **sync), sync["dry_run"])

        def on_error(exc: Exception) -> None:
            self.stderr.write(f"Consul catalog watch failed, retrying: {explain_error(exc)}")

        self.stdout.write("Watching Consul's catalog; Ctrl-C stops.")
        with contextlib.suppress(KeyboardInterrupt):
            try:
                watch_catalog(
                    client,
                    on_change,
                    stop=stop,
                    datacenter=sync["datacenter"],
                    counters=runtime.counters,
                    on_error=on_error,
                )
            finally:
                client.http.session.close()
        self.stdout.write("Stopped watching.")

    def _report(self, plan: SyncPlan, dry_run: bool) -> None:
        if dry_run:
            self.stdout.write("Dry run: nothing is written.")
        for change in plan.changes:
            self.stdout.write(str(change))
        for kept in plan.kept:
            self.stdout.write(f"= route {kept}: left as it is")
        for problem in plan.problems:
            self.stderr.write(str(problem))
        summary = plan.summary()
        if dry_run and plan.changes:
            summary = f"Would have: {summary[0].lower()}{summary[1:]}"
        self.stdout.write(summary)
