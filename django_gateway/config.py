"""The configuration a snapshot holds and a request is decided on: frozen, typed values only.

This is the bottom layer of the package (docs/architecture.md): it imports nothing of the gateway,
so every decision, adapter and shell can share these types without import cycles. Rows become
these values once per snapshot (:mod:`django_gateway.snapshot`); the request path never reads a
model.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Instance:
    host: str
    port: int
    weight: int


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    id: int
    name: str
    protocol: str
    path: str
    connect_timeout: float
    read_timeout: float
    timeout: float
    retries: int
    tls_verify: bool
    targets: tuple[Instance, ...]  # static targets (empty for discovery="consul")
    discovery: str = "static"
    consul_service: str = ""  # the name in Consul (the service's own name when not set)
    consul_tags: tuple[str, ...] = ()
    consul_datacenter: str = ""
    consul_include_warning: bool = False
    load_balancing: str = "round_robin"
    hash_on: str = "ip"
    hash_on_header: str = ""
    hash_on_cookie: str = ""
    max_concurrent_requests: int | None = None  # per process; None: unlimited


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """A consumer as the snapshot holds it (enabled consumers only)."""

    id: int
    username: str
    custom_id: str
    groups: frozenset[str]


@dataclass(frozen=True, slots=True)
class Identity:
    consumer: ConsumerConfig
    credential: str  # sent upstream as X-Credential-Identifier ("" for the anonymous consumer)
    groups: frozenset[str]  # the consumer's groups, plus any a JWT groups claim mapped in
    anonymous: bool = False
    credential_type: str = ""  # "key" or "jwt": with ``credential``, what rate limits count by


@dataclass(slots=True)
class CredentialUse:
    """Where the request carried its credential, for ``hide_credentials``."""

    headers: set[str] = field(default_factory=set)  # lower-case header names
    query_param: str | None = None
    cookie: str | None = None

    def __bool__(self) -> bool:
        return bool(self.headers or self.query_param or self.cookie)


@dataclass(frozen=True, slots=True)
class CompiledLimit:
    id: int
    limit: int
    period: str  # "minute": names the X-RateLimit-*-Minute headers
    seconds: int
    limit_by: str
    header_key: str  # the WSGI environ key of the header limited by ("" otherwise)
    fault_tolerant: bool
    scope: tuple[str, int]  # ("route", id), ("service", id) or ("global", 0)
    consumer_id: int | None
    # Spelled out once per snapshot instead of once per request:
    limit_header: str = ""  # X-RateLimit-Limit-Minute
    remaining_header: str = ""  # X-RateLimit-Remaining-Minute


@dataclass(frozen=True, slots=True)
class RouteLimits:
    general: tuple[CompiledLimit, ...]
    by_consumer: dict[int, tuple[CompiledLimit, ...]]

    def for_consumer(self, consumer_id: int | None) -> tuple[CompiledLimit, ...]:
        if consumer_id is None:
            return self.general
        return self.by_consumer.get(consumer_id, self.general)


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """What the request path needs of a ``Route`` row, frozen for sharing between threads."""

    id: int
    name: str
    service: ServiceConfig
    paths: tuple[str, ...]
    hosts: tuple[str, ...]
    methods: frozenset[str]
    headers: tuple[tuple[str, frozenset[str]], ...]
    priority: int = 0
    strip_path: bool = True
    preserve_host: bool = False
    connect_timeout: float | None = None
    read_timeout: float | None = None
    timeout: float | None = None
    max_response_duration: float | None = None
    websocket: bool = False  # WebSocket upgrades are carried to the upstream (ASGI shell)
    max_body_size: int | None = None
    authentication: str = "none"
    anonymous_consumer: ConsumerConfig | None = None
    hide_credentials: bool = True
    allowed_groups: frozenset[str] = frozenset()
    denied_groups: frozenset[str] = frozenset()
    allowed_ips: tuple[IPNetwork, ...] = ()
    denied_ips: tuple[IPNetwork, ...] = ()
    limits: RouteLimits | None = None  # None when no rate limit applies

    @property
    def specificity(self) -> int:
        return bool(self.methods) + len(self.headers)

    def accepts(self, method: str, environ: Mapping[str, object]) -> str | None:
        """``None`` when method and headers fit, else why not (for the route tester)."""
        if self.methods and method not in self.methods:
            return f"method {method} not in {sorted(self.methods)}"
        for name, values in self.headers:
            got = environ.get("HTTP_" + name.upper().replace("-", "_"))
            if got not in values:
                seen = "is missing" if got is None else f"is {got!r}"
                return f"header {name} {seen}, needs one of {sorted(values)}"
        return None
