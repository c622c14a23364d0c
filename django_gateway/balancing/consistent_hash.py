"""Consistent hashing: a request key always lands on the same instance while the set holds.

The ring is built once per instance set. Each instance owns ``POINTS_PER_INSTANCE`` (160) points
per unit of weight, the unit being the smallest weight in the set, so equal weights give 160
points each and weight 300 next to 100 gives 480 next to 160. A ring holds at most about
``MAX_POINTS`` (20,000); a larger set is scaled down proportionally. A point is the first 8 bytes
of ``blake2b("host:port#n")``, and a key the same hash of its UTF-8 bytes, so every process and
every machine builds the same ring and sends a key to the same instance (Python's ``hash()`` is
salted per process and would not).

A key goes to the owner of the first point at or after its hash, wrapping around. An instance
the forwarder cannot use (ejected, already tried for this request, its probe slot taken) is
skipped by walking on to the next point owned by another instance: exactly where its keys would
go if it were removed, so the other instances' keys never move. Adding one instance to N moves
about 1/(N+1) of the keys, all to the new instance.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from functools import lru_cache
from hashlib import blake2b
from typing import Any, Protocol

from ..config import Identity, Instance, ServiceConfig
from ..cookies import request_cookie
from .base import InFlight, Usable

POINTS_PER_INSTANCE = 160
MAX_POINTS = 20_000


def hash64(data: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


def point_counts(instances: Sequence[Instance]) -> list[int]:
    """Ring points per instance: 160 per unit of the smallest weight, within ``MAX_POINTS``."""
    if not instances:
        return []
    unit = max(1, min(inst.weight for inst in instances))
    counts = [max(1, round(POINTS_PER_INSTANCE * max(inst.weight, 1) / unit)) for inst in instances]
    total = sum(counts)
    if total > MAX_POINTS:
        counts = [max(1, round(count * MAX_POINTS / total)) for count in counts]
    return counts


class HashRing:
    kind = "consistent_hash"

    def __init__(self, instances: Sequence[Instance], in_flight: InFlight | None = None) -> None:
        self.instances = tuple(instances)
        points: list[tuple[int, str, int, int]] = []
        counts = point_counts(self.instances)
        for index, (inst, count) in enumerate(zip(self.instances, counts, strict=True)):
            name = f"{inst.host}:{inst.port}#"
            points.extend(
                (hash64(f"{name}{n}".encode()), inst.host, inst.port, index) for n in range(count)
            )
        # Ties (astronomically rare) are broken by address, never by the set's order, so every
        # process agrees whatever order discovery listed the instances in.
        points.sort()
        self._hashes = [point[0] for point in points]
        self._owners = [point[3] for point in points]

    def pick(self, usable: Usable, key: str | None = None) -> Instance | None:
        hashes, owners, instances = self._hashes, self._owners, self.instances
        if not hashes:
            return None
        position = bisect_left(hashes, hash64(key.encode("utf-8", "surrogatepass") if key else b""))
        size = len(owners)
        if position == size:
            position = 0
        owner = owners[position]
        if usable(instances[owner]):
            return instances[owner]
        seen = {owner}
        for step in range(1, size):
            owner = owners[(position + step) % size]
            if owner in seen:
                continue
            if usable(instances[owner]):
                return instances[owner]
            seen.add(owner)
            if len(seen) == len(instances):
                break
        return None


class HashSource(Protocol):
    """What a request offers to hash on: the Exchange has it, and so does a test's stand-in."""

    @property
    def identity(self) -> Identity | None: ...
    @property
    def environ(self) -> Mapping[str, Any]: ...
    @property
    def client_ip(self) -> str: ...


def hash_key(service: ServiceConfig, exchange: HashSource) -> str:
    """What the request is hashed on (``Service.hash_on``); the client address when that is
    missing: an anonymous consumer, an absent or empty header or cookie."""
    hash_on = service.hash_on
    if hash_on == "consumer":
        identity = exchange.identity
        if identity is not None and not identity.anonymous:
            return str(identity.consumer.id)
    elif hash_on == "header":
        value: str | None = exchange.environ.get(_environ_key(service.hash_on_header))
        if value:
            return value
    elif hash_on == "cookie":
        value = request_cookie(exchange.environ, service.hash_on_cookie)
        if value:
            return value
    return exchange.client_ip


@lru_cache(maxsize=256)
def _environ_key(header: str) -> str:
    name = header.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name
