"""Consul's catalog imported as services and routes (``gateway_sync_services``, the admin's
"Sync from Consul now"): a front end's operation, next to :mod:`django_gateway.operations`.

:mod:`.tags` reads what a service's tags declare, :mod:`.routeplan` decides which route row each
declaration is, :mod:`.plan` holds the changes and problems a sync reports, :mod:`.sync` reads the
catalog and writes the plan in one transaction. Runtime instance resolution stays in
:mod:`django_gateway.discovery`.
"""
