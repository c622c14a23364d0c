"""Smooth weighted round robin, the algorithm nginx uses.

Every pick adds each instance's weight to its running score and takes the highest, then
subtracts the total from the winner. Traffic follows the weights exactly over each cycle and the
heavy instance is not hit in bursts. Instances the forwarder skips keep their score.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ..config import Instance
from .base import InFlight, Usable, smooth_pick


class WeightedRoundRobin:
    kind = "round_robin"

    def __init__(self, instances: Sequence[Instance], in_flight: InFlight | None = None) -> None:
        self.instances = tuple(instances)
        self._scores = [0] * len(self.instances)
        self._lock = threading.Lock()

    def pick(self, usable: Usable, key: str | None = None) -> Instance | None:
        """The next instance for which ``usable`` is true (skipped ones keep their score)."""
        with self._lock:
            candidates = [i for i, inst in enumerate(self.instances) if usable(inst)]
            if not candidates:
                return None
            return self.instances[smooth_pick(self._scores, self.instances, candidates)]
