"""Create the benchmark database: migrate, then one service (the upstream) and one open route.

Run by :mod:`benchmarks.run` as ``python -m benchmarks.seed`` with the benchmark environment set.
The rows go through ``full_clean`` like an admin edit would, so the benchmark route is a valid one.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from django_gateway.models import Route, Service, Target

    call_command("migrate", verbosity=0, interactive=False)
    upstream = urlparse(settings.UPSTREAM_URL)
    service = Service(name="bench-upstream")
    service.full_clean()
    service.save()
    target = Target(service=service, host=upstream.hostname, port=upstream.port)
    target.full_clean()
    target.save()
    route = Route(name="bench-open", service=service, paths=["/gw"], strip_path=True)
    route.full_clean()
    route.save()


if __name__ == "__main__":
    main()
