"""Load balancing over a service's instances (``Service.load_balancing``).

- ``round_robin``: smooth weighted round robin (:mod:`.round_robin`);
- ``least_connections``: fewest requests in flight per unit of weight (:mod:`.least_connections`);
- ``random``: the power of two choices, weighted (:mod:`.two_choices`);
- ``consistent_hash``: a hash ring keyed by ``hash_on`` (:mod:`.consistent_hash`).

State is per process (DESIGN §5): :data:`balancers` keeps one balancer per service, rebuilt when
the service's algorithm or instance set changes, and the service's in-flight counts, which
survive rebuilds. See ``docs/load-balancing.md``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ..config import Instance
from .base import Balancer, InFlight, Usable
from .consistent_hash import HashRing, hash_key
from .least_connections import LeastConnections
from .round_robin import WeightedRoundRobin
from .two_choices import PowerOfTwoChoices

__all__ = [
    "LOAD_AWARE",
    "Balancer",
    "Balancers",
    "HashRing",
    "InFlight",
    "Instance",
    "LeastConnections",
    "PowerOfTwoChoices",
    "Usable",
    "WeightedRoundRobin",
    "balancers",
    "hash_key",
]

ALGORITHMS: dict[str, Callable[[tuple[Instance, ...], InFlight], Balancer]] = {
    cls.kind: cls for cls in (WeightedRoundRobin, LeastConnections, PowerOfTwoChoices, HashRing)
}
#: Algorithms that read in-flight counts: only for these does the forwarder keep them.
LOAD_AWARE = frozenset({LeastConnections.kind, PowerOfTwoChoices.kind})


class Balancers:
    """One balancer per service, rebuilt when the service's algorithm or instance set changes."""

    def __init__(self) -> None:
        self._by_service: dict[str, Balancer] = {}
        self._in_flight: dict[str, InFlight] = {}
        self._lock = threading.Lock()

    def for_service(
        self, name: str, instances: Sequence[Instance], kind: str = "round_robin"
    ) -> Balancer:
        balancer = self._by_service.get(name)
        if balancer is not None and balancer.instances is instances and balancer.kind == kind:
            return balancer
        if kind not in ALGORITHMS:  # the model's choices rule this out; never fail a request
            kind = WeightedRoundRobin.kind
        instances = tuple(instances)
        if balancer is None or balancer.kind != kind or balancer.instances != instances:
            with self._lock:
                balancer = self._by_service.get(name)
                if balancer is None or balancer.kind != kind or balancer.instances != instances:
                    in_flight = self._in_flight.setdefault(name, InFlight())
                    balancer = ALGORITHMS[kind](instances, in_flight)
                    self._by_service[name] = balancer
        return balancer

    def in_flight(self, name: str) -> InFlight:
        """The service's in-flight counts (shared by every balancer it gets)."""
        counts = self._in_flight.get(name)
        if counts is None:
            with self._lock:
                counts = self._in_flight.setdefault(name, InFlight())
        return counts

    def reset(self) -> None:
        with self._lock:
            self._by_service.clear()
            self._in_flight.clear()


balancers = Balancers()
