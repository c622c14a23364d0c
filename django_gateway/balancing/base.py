"""What every balancer shares: the instance value, the balancer interface, in-flight counts.

A balancer is built once per service, algorithm and set of instances, and answers
``pick(usable, key)``: an instance for which ``usable`` is true, or ``None`` when there is none.
``usable`` is the forwarder's filter (not tried yet for this request, not ejected); ``key`` is
the consistent-hash key and is ignored by the other algorithms.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from ..config import Instance

Usable = Callable[["Instance"], bool]


class Balancer(Protocol):
    #: The algorithm's name, as in ``Service.load_balancing``.
    kind: str
    instances: tuple[Instance, ...]

    def pick(self, usable: Usable, key: str | None = None) -> Instance | None: ...


class InFlight:
    """Requests in flight per instance of one service, in this process (DESIGN §5).

    The forwarder counts a try from the moment it starts until its response is finished (see
    ``docs/load-balancing.md``). Counts survive a change of the instance set, so a rebuilt
    balancer still sees the requests the old one sent. Reads take no lock: a slightly stale
    count only makes one pick slightly less informed.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._counts: dict[Instance, int] = {}
        self._lock = threading.Lock()

    def get(self, instance: Instance) -> int:
        return self._counts.get(instance, 0)

    def acquire(self, instance: Instance) -> None:
        with self._lock:
            self._counts[instance] = self._counts.get(instance, 0) + 1

    def release(self, instance: Instance) -> None:
        with self._lock:
            count = self._counts.get(instance, 0) - 1
            if count > 0:
                self._counts[instance] = count
            else:  # idle instances leave no entry, so removed instances leave nothing behind
                self._counts.pop(instance, None)

    def total(self) -> int:
        return sum(self._counts.values())


def smooth_pick(scores: list[int], instances: Sequence[Instance], candidates: list[int]) -> int:
    """nginx's smooth weighted round robin over ``candidates`` (indices into ``instances``):
    every candidate's score grows by its weight, the highest wins and gives back the total.
    Callers hold the lock that guards ``scores``."""
    total = 0
    best = candidates[0]
    for i in candidates:
        weight = instances[i].weight
        scores[i] += weight
        total += weight
        if scores[i] > scores[best]:
            best = i
    scores[best] -= total
    return best
