"""Load balancing over a service's instances.

Weighted round robin uses the smooth algorithm nginx uses: every pick adds each instance's weight
to its running score and takes the highest, then subtracts the total from the winner. Traffic
follows the weights exactly over each cycle and the heavy instance is not hit in bursts. State is
per process and per set of instances; a changed set starts a fresh cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Instance:
    host: str
    port: int
    weight: int


class WeightedRoundRobin:
    def __init__(self, instances: Sequence[Instance]) -> None:
        self.instances = tuple(instances)
        self._scores = [0] * len(self.instances)
        self._lock = threading.Lock()

    def pick(self, usable: Callable[[Instance], bool]) -> Instance | None:
        """The next instance for which ``usable`` is true (skipped ones keep their score)."""
        with self._lock:
            candidates = [i for i, inst in enumerate(self.instances) if usable(inst)]
            if not candidates:
                return None
            total = 0
            best = candidates[0]
            for i in candidates:
                self._scores[i] += self.instances[i].weight
                total += self.instances[i].weight
                if self._scores[i] > self._scores[best]:
                    best = i
            self._scores[best] -= total
            return self.instances[best]


class Balancers:
    """One balancer per service, rebuilt when the service's instance set changes."""

    def __init__(self) -> None:
        self._by_service: dict[str, WeightedRoundRobin] = {}
        self._lock = threading.Lock()

    def for_service(self, name: str, instances: Sequence[Instance]) -> WeightedRoundRobin:
        balancer = self._by_service.get(name)
        if balancer is not None and balancer.instances is instances:
            return balancer
        instances = tuple(instances)
        if balancer is None or balancer.instances != instances:
            with self._lock:
                balancer = self._by_service.get(name)
                if balancer is None or balancer.instances != instances:
                    balancer = self._by_service[name] = WeightedRoundRobin(instances)
        return balancer

    def reset(self) -> None:
        with self._lock:
            self._by_service.clear()


balancers = Balancers()
