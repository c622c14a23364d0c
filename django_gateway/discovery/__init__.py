"""Where a service's instances come from: its static targets, or Consul (DESIGN §3 "discovery").

:func:`instances_for` is the one seam the proxy uses; it never blocks on the network except once
per service and process, on a cold start of a Consul-discovered service (bounded by
``CONSUL_COLD_START_TIMEOUT``). :func:`describe` is what this process knows about a service, for
the admin's live-instance panel. See ``docs/discovery.md``.

Modules: :mod:`.client` builds the py-consul client, :mod:`.consul` turns Consul's health entries
into instances, :mod:`.watcher` runs the blocking-query loop, :mod:`.cache` holds the watchers and
decides what a request gets.
"""

from __future__ import annotations

from ..conf import gateway_settings
from ..config import Instance, ServiceConfig
from ..exceptions import ServiceUnavailable
from .cache import ServiceState, Watchers, consul_instances
from .cache import describe as _describe_consul
from .client import consul_client

__all__ = ["ServiceState", "Watchers", "consul_client", "describe", "instances_for"]

CONSUL = "consul"


def instances_for(service: ServiceConfig, watchers: Watchers) -> tuple[Instance, ...]:
    """The instances to balance over, or 503 with ``Retry-After`` when there are none;
    ``watchers`` are the process's Consul watchers (``runtime.watchers``)."""
    if service.discovery == CONSUL:
        return consul_instances(service, watchers)
    instances = service.targets
    if not instances:
        raise ServiceUnavailable(
            f"Service {service.name!r} has no enabled targets.",
            retry_after=gateway_settings.RETRY_AFTER_UNAVAILABLE,
        )
    return instances


def describe(service: ServiceConfig, watchers: Watchers) -> ServiceState:
    """What this process knows about ``service``'s instances (static targets are always
    current: no index, no error, never stale)."""
    if service.discovery == CONSUL:
        return _describe_consul(service, watchers)
    return ServiceState(instances=service.targets, index=0, updated_at=None, error="", stale=False)
