"""``manage.py demo``: the whole gateway on one machine, in one process, in one command.

1. migrate the SQLite database and create the ``admin`` / ``admin`` superuser if missing;
2. start two echo upstreams on 127.0.0.1 (ports 8101 and 8102 unless taken);
3. seed services, targets and routes pointing at them (idempotent);
4. run Django's development server with the gateway in front of the project's own views.

``--seed-only`` stops after step 3 (without starting the upstreams), for tests and scripts.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from demo.seed import Seeded, fresh_demo_key, seed
from demo.upstreams import DemoUpstream

DEFAULT_ADDRPORT = "127.0.0.1:8000"
DEFAULT_UPSTREAM_PORTS = (8101, 8102)


class Command(BaseCommand):
    help = "Run the django-gateway demo: migrate, seed routes, start two echo upstreams, serve."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "addrport",
            nargs="?",
            default=DEFAULT_ADDRPORT,
            help=f"Where the gateway listens, as for runserver (default {DEFAULT_ADDRPORT}).",
        )
        parser.add_argument(
            "--upstream-ports",
            nargs=2,
            type=int,
            default=DEFAULT_UPSTREAM_PORTS,
            metavar=("PORT_A", "PORT_B"),
            help="Ports of the two echo upstreams on 127.0.0.1 (default 8101 8102); a port "
            "that is taken is replaced by a free one. 0 always picks a free one.",
        )
        parser.add_argument(
            "--seed-only",
            action="store_true",
            help="Migrate and seed the demo rows (targets on --upstream-ports), then exit.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = options["verbosity"]
        call_command("migrate", interactive=False, verbosity=max(verbosity - 1, 0))
        self._ensure_superuser()
        if options["seed_only"]:
            self._seed(options["upstream_ports"])
            return

        names = ("upstream-a", "upstream-b")
        upstreams = [
            DemoUpstream(name, port)
            for name, port in zip(names, options["upstream_ports"], strict=True)
        ]
        try:
            for upstream in upstreams:
                upstream.start()
                note = f" (port {upstream.asked_port} was taken)" if upstream.fell_back else ""
                self.stdout.write(f"Started echo upstream {upstream.name} at {upstream.url}{note}")
            seeded = self._seed([u.port for u in upstreams])
            self._print_tour(options["addrport"], fresh_demo_key(seeded.consumer))
            # --noreload: the upstreams are threads of this process, which the autoreloader
            # would leave behind in its parent.
            call_command("runserver", options["addrport"], use_reloader=False)
        finally:
            for upstream in upstreams:
                upstream.stop()

    def _ensure_superuser(self) -> None:
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write(
                self.style.WARNING(
                    "Created the superuser admin / admin. It is for this local demo only."
                )
            )

    def _seed(self, ports: list[int]) -> Seeded:
        seeded = seed(ports)
        self.stdout.write(
            f"Seeded {len(seeded.services)} services, {len(seeded.targets)} targets, "
            f"{len(seeded.routes)} routes and consumer {seeded.consumer.username}."
        )
        return seeded

    def _print_tour(self, addrport: str, api_key: str) -> None:
        host, _, port = addrport.rpartition(":")
        if not host or host in ("0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"
        base = f"http://{host}:{port or addrport}"
        self.stdout.write(
            self.style.SUCCESS("\nThe gateway is starting. In another terminal, try:\n")
            + f"""
  curl -i {base}/echo/hello                     # route "echo": /echo stripped, upstream sees /hello
  curl -i '{base}/v1/orders/42?expand=items'     # route "orders-v1": upstream sees /orders/42?...
  curl -i -H 'Host: echo.localhost' {base}/x     # route "echo-by-host", chosen by Host
  curl -i -H 'X-API-Key: {api_key}' {base}/secure/hello
                                                 # route "echo-key": needs this key (401 without),
                                                 # 10 requests a minute (see RateLimit-Remaining)
  curl -i {base}/                               # no route matches: Django's own view answers

Admin: {base}/admin/  (user admin, password admin: demo only)
Add or change a route there (or in `manage.py shell`); it is live within a second.
Stop with Ctrl-C.
"""
        )
