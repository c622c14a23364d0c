"""``manage.py gateway_routes``: the compiled route table, in the order the matcher tries it."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from ...operations import route_rows

COLUMNS = ("HOST", "PATH", "METHODS", "PRIORITY", "ROUTE", "SERVICE", "TARGETS")


class Command(BaseCommand):
    help = (
        "List enabled routes as the gateway compiles them (read fresh from the database), one line "
        "per host and path, in the order the matcher tries them for a request to that host."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = route_rows()
        if options["json"]:
            self.stdout.write(json.dumps([row.as_dict() for row in rows], indent=2))
            return
        if not rows:
            self.stdout.write("No enabled routes: Django serves every request.")
            return
        table = [COLUMNS] + [
            (
                row.host,
                row.path,
                ",".join(row.methods) or "*",
                str(row.priority),
                row.route,
                row.service,
                " ".join(row.targets) or "(no targets)",
            )
            for row in rows
        ]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS) - 1)]
        for line in table:
            cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
            self.stdout.write("  ".join([*cells, line[-1]]).rstrip())
