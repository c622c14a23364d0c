"""``random``: the power of two choices.

Two distinct usable instances are drawn at random, each with probability proportional to its
weight, and the one with fewer requests in flight in this process wins (the first drawn on a
tie). An idle service therefore follows the weights exactly, and a loaded instance is avoided
without every process herding onto the same "least loaded" one. Nothing is shared between
requests except the in-flight counts, so picks take no lock.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..config import Instance
from .base import InFlight, Usable


class PowerOfTwoChoices:
    kind = "random"
    #: The random source, a seam for tests (``random.Random(seed).random``).
    random = staticmethod(random.random)

    def __init__(self, instances: Sequence[Instance], in_flight: InFlight | None = None) -> None:
        self.instances = tuple(instances)
        self.in_flight = in_flight if in_flight is not None else InFlight()

    def pick(self, usable: Usable, key: str | None = None) -> Instance | None:
        candidates = [inst for inst in self.instances if usable(inst)]
        if len(candidates) < 2:
            return candidates[0] if candidates else None
        total = sum(inst.weight for inst in candidates)
        first = self._draw(candidates, total, None)
        second = self._draw(candidates, total - first.weight, first)
        count = self.in_flight.get
        return second if count(second) < count(first) else first

    def _draw(self, candidates: list[Instance], total: int, exclude: Instance | None) -> Instance:
        point = self.random() * total
        chosen = candidates[0]
        for inst in candidates:
            if inst is exclude:
                continue
            chosen = inst
            point -= inst.weight
            if point < 0:
                break
        return chosen  # the last one when rounding left ``point`` a hair above zero
