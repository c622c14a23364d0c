"""Choosing the instance for one try: discovery, balancing, passive ejection and in-flight counts.

:func:`choose` is the one call ``forward`` makes per try: it asks discovery for the service's
instances (static targets or Consul's answer), lets the service's balancer pick among those not
tried yet and not ejected, claims the half-open probe slot of an instance coming back from a
cool-down, and starts the in-flight count the load-aware balancers read. The :class:`Choice` it
returns is then told how the try went (:meth:`Choice.succeeded`, :meth:`Choice.failed`,
:meth:`Choice.not_its_fault`), and :meth:`Choice.finished` ends the in-flight count when the
response is done. All of it is per process state held by the runtime (DESIGN §5).
"""

from __future__ import annotations

from dataclasses import dataclass

from .balancing import LOAD_AWARE, InFlight, hash_key
from .config import Instance, ServiceConfig
from .discovery import instances_for
from .ejection import InstanceKey
from .exceptions import ServiceUnavailable
from .exchange import Exchange
from .proxy.pool import Endpoint, endpoint_for
from .runtime import runtime


@dataclass(slots=True)
class Choice:
    """The instance one try goes to, and the bookkeeping that try owes it."""

    instance: Instance
    key: InstanceKey
    endpoint: Endpoint
    in_flight: InFlight | None  # counted only for the algorithms that read it

    def succeeded(self) -> None:
        runtime.ejections.success(self.key)

    def failed(self) -> None:
        """The instance failed this try (counts towards its ejection); the try is over."""
        runtime.ejections.failure(self.key)
        self.finished()

    def not_its_fault(self) -> None:
        """The try ended on the client's side (its body): the instance is not blamed."""
        runtime.ejections.release_probe(self.key)
        self.finished()

    def finished(self) -> None:
        """The try's response is done (sent, or abandoned): end its in-flight count."""
        if self.in_flight is not None:
            self.in_flight.release(self.instance)
            self.in_flight = None


def choose(exchange: Exchange, tried: set[Instance]) -> Choice:
    """An instance of the route's service not in ``tried``, or 503 with ``Retry-After``."""
    service = exchange.route.service
    instance = _pick(service, exchange, tried)
    in_flight = None
    if service.load_balancing in LOAD_AWARE:
        in_flight = runtime.balancers.in_flight(service.name)
        in_flight.acquire(instance)
    return Choice(
        instance=instance,
        key=(service.name, instance.host, instance.port),
        endpoint=endpoint_for(service.protocol, instance.host, instance.port, service.tls_verify),
        in_flight=in_flight,
    )


def _pick(service: ServiceConfig, exchange: Exchange, tried: set[Instance]) -> Instance:
    instances = instances_for(service, runtime.watchers)
    name, ejections = service.name, runtime.ejections
    if len(instances) == 1:  # nothing to balance
        instance = instances[0]
        if instance not in tried and ejections.begin((name, instance.host, instance.port)):
            return instance
        raise ServiceUnavailable(
            f"The only instance of service {name!r} is ejected after failures.",
            retry_after=ejections.retry_after([(name, instance.host, instance.port)]),
        )
    kind = service.load_balancing
    balancer = runtime.balancers.for_service(name, instances, kind)
    key = hash_key(service, exchange) if kind == "consistent_hash" else None
    skipped: set[Instance] = set()
    while True:
        picked = balancer.pick(
            lambda i: (
                i not in tried and i not in skipped and ejections.available((name, i.host, i.port))
            ),
            key,
        )
        if picked is None:
            raise ServiceUnavailable(
                f"Every instance of service {name!r} is ejected after failures.",
                retry_after=ejections.retry_after([(name, i.host, i.port) for i in instances]),
            )
        if ejections.begin((name, picked.host, picked.port)):
            return picked
        skipped.add(picked)  # another thread took its probe slot a moment ago
