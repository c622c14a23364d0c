"""Least connections, weighted: the instance with the fewest requests in flight per unit of weight.

Like nginx's ``least_conn``: an instance with weight 300 and 3 requests in flight counts as
loaded as one with weight 100 and 1. Instances tied at the lowest load share traffic by smooth
weighted round robin, so an idle service (every count 0) is balanced exactly as round robin would.
Counts are this process's own (DESIGN §5): each gunicorn worker balances what it sends.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ..config import Instance
from .base import InFlight, Usable, smooth_pick


class LeastConnections:
    kind = "least_connections"

    def __init__(self, instances: Sequence[Instance], in_flight: InFlight | None = None) -> None:
        self.instances = tuple(instances)
        self.in_flight = in_flight if in_flight is not None else InFlight()
        self._scores = [0] * len(self.instances)
        self._lock = threading.Lock()

    def pick(self, usable: Usable, key: str | None = None) -> Instance | None:
        count = self.in_flight.get
        tied: list[int] = []
        best_count, best_weight = 0, 1
        for i, inst in enumerate(self.instances):
            if not usable(inst):
                continue
            load = count(inst)
            # load / weight compared without division: a/b < c/d  <=>  a*d < c*b (weights > 0)
            if not tied or load * best_weight < best_count * inst.weight:
                tied = [i]
                best_count, best_weight = load, inst.weight
            elif load * best_weight == best_count * inst.weight:
                tied.append(i)
        if not tied:
            return None
        if len(tied) == 1:
            return self.instances[tied[0]]
        with self._lock:
            return self.instances[smooth_pick(self._scores, self.instances, tied)]
