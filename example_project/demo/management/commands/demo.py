"""``manage.py demo``: the whole gateway on one machine, in one process, in one command.

1. claim the ports: the gateway's address must be free, and the two echo upstreams start on
   127.0.0.1 (ports 8101 and 8102 by default); if any port is taken, say which process holds it
   and exit with status 1, having changed nothing;
2. migrate the SQLite database and create the ``admin`` / ``admin`` superuser if missing;
3. seed services, targets and routes pointing at the upstreams (idempotent), and issue the demo
   consumer a fresh API key;
4. run Django's development server with the gateway in front of the project's own views.

Step 1 comes first because steps 2 and 3 write to a database that a demo already running on
those ports is using: re-seeding would point its targets at upstreams about to vanish and revoke
its key. ``--seed-only`` runs steps 2 and 3 without the key and serves nothing, for tests and
scripts.
"""

from __future__ import annotations

import errno
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.management.commands.runserver import naiveip_re

from demo.ports import bind_error, describe_holders
from demo.seed import Seeded, fresh_demo_key, seed
from demo.upstreams import DemoUpstream

DEFAULT_ADDRPORT = "127.0.0.1:8000"
DEFAULT_UPSTREAM_PORTS = (8101, 8102)
UPSTREAM_NAMES = ("upstream-a", "upstream-b")
BESIDE = (
    "EXAMPLE_DB_PATH=/tmp/demo2.sqlite3 .venv/bin/python example_project/manage.py demo "
    "127.0.0.1:8001 --upstream-ports 0 0"
)


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
            help="Ports of the two echo upstreams on 127.0.0.1 (default 8101 8102); 0 picks a "
            "free one. If a port is taken, the demo names its holder and changes nothing.",
        )
        parser.add_argument(
            "--seed-only",
            action="store_true",
            help="Migrate and seed the demo rows (targets on --upstream-ports), then exit.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["seed_only"]:
            self._prepare_database(options["verbosity"])
            self._seed(options["upstream_ports"])
            return

        host, port = gateway_address(options["addrport"])
        upstreams = self._claim_ports(host, port, options["upstream_ports"])
        try:
            self._prepare_database(options["verbosity"])
            for upstream in upstreams:
                self.stdout.write(f"Started echo upstream {upstream.name} at {upstream.url}")
            seeded = self._seed([u.port for u in upstreams])
            self._print_tour(host, port, fresh_demo_key(seeded.consumer))
            # --noreload: the upstreams are threads of this process, which the autoreloader
            # would leave behind in its parent.
            call_command("runserver", options["addrport"], use_reloader=False)
        finally:
            for upstream in upstreams:
                upstream.stop()

    def _claim_ports(self, host: str, port: int, upstream_ports: list[int]) -> list[DemoUpstream]:
        """Start the upstreams (which holds their ports) once the gateway's port is known to be
        free; refuse with every taken port and its holder otherwise."""
        taken = []
        if error := bind_error(host, port):
            taken.append(port_problem(host, port, "the gateway", error))
        upstreams = []
        for name, wanted in zip(UPSTREAM_NAMES, upstream_ports, strict=True):
            upstream = DemoUpstream(name, wanted)
            try:
                upstreams.append(upstream.start())
            except OSError as exc:
                taken.append(port_problem(upstream.host, wanted, name, exc))
        if taken:
            for upstream in upstreams:
                upstream.stop()
            raise CommandError(
                "The demo did not start and changed nothing (its database, targets and API key "
                "are as they were): a port it needs is not free.\n"
                + "".join(f"  {line}\n" for line in taken)
                + "Is a demo already running? Stop it first, or run this one beside it with its "
                f"own database and ports:\n  {BESIDE}"
            )
        return upstreams

    def _prepare_database(self, verbosity: int) -> None:
        call_command("migrate", interactive=False, verbosity=max(verbosity - 1, 0))
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

    def _print_tour(self, host: str, port: int, api_key: str) -> None:
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        base = f"http://{with_port(host, port)}"
        self.stdout.write(
            self.style.SUCCESS(f"\nThe gateway is starting at {base}/. In another terminal, try:\n")
            + f"""
  # Route "echo": the prefix /echo is stripped, so the upstream sees /hello.
  curl -i {base}/echo/hello
  # Route "orders-v1": the upstream sees /orders/42?expand=items.
  curl -i '{base}/v1/orders/42?expand=items'
  # Route "echo-by-host", chosen by the Host header.
  curl -i -H 'Host: echo.localhost' {base}/x
  # Route "echo-key" needs this API key of demo-user's (401 without it; shown only now)
  # and allows 10 requests a minute (then 429).
  KEY={api_key}
  curl -i -H "X-API-Key: $KEY" {base}/secure/hello
  # No route matches: Django's own page answers.
  curl -i {base}/

Admin: {base}/admin/ (user admin, password admin: for this local demo only).
A route added or changed there, or in `manage.py shell`, is live within a second.
Stop with Ctrl-C.
"""
        )


def gateway_address(addrport: str) -> tuple[str, int]:
    """``addrport`` as ``runserver`` reads it (its own pattern), as a host to bind and a port."""
    match = naiveip_re.match(addrport)
    if match is None:
        raise CommandError(f'"{addrport}" is not a valid port number or address:port pair.')
    addr, _ipv4, ipv6, _fqdn, port = match.groups()
    if ipv6:
        addr = addr[1:-1]
    return addr or "127.0.0.1", int(port)


def port_problem(host: str, port: int, role: str, error: OSError) -> str:
    where = f"{with_port(host, port)} ({role})"
    if error.errno == errno.EADDRINUSE:
        return f"{where} is in use by {describe_holders(port)}"
    return f"{where} cannot be used: {error.strerror or error}"


def with_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
