"""The per-process configuration snapshot: routes and services, frozen, swapped when they change.

A request reads :func:`get_snapshot` and nothing else from the configuration: no database query on
the hot path. At most every ``CONFIG_POLL_INTERVAL`` seconds one request per process checks the
shared version (:mod:`django_gateway.revision`) and, if it moved, rebuilds the snapshot while other
threads keep using the old one. If the cache or the database is down the old snapshot keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from .auth.jwt_credentials import JWTCredentialConfig, compile_credential
from .auth.key_store import KeyStore
from .auth.token_cache import VerifiedTokens
from .conf import gateway_settings
from .config import CompiledRoute, ConsumerConfig, Instance, ServiceConfig
from .hosts import canonical_host
from .models import Consumer, JWTCredential, RateLimit, Route, Service
from .netpolicy import parse_networks
from .revision import current_revision
from .routing import RouteTable
from .throttling.rules import LimitIndex, compile_limit

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: str
    routes: RouteTable
    services: dict[str, ServiceConfig]
    consumers: dict[int, ConsumerConfig] = field(default_factory=dict)
    jwt_credentials: dict[str, JWTCredentialConfig] = field(default_factory=dict)
    #: API keys are looked up on demand through this per-snapshot cache, so a configuration
    #: change (a revoked key) empties it everywhere within CONFIG_POLL_INTERVAL.
    api_keys: KeyStore = field(default_factory=KeyStore)
    #: Tokens verified under this snapshot (auth.token_cache), emptied the same way.
    verified_tokens: VerifiedTokens = field(default_factory=VerifiedTokens)


def _service_config(service: Service) -> ServiceConfig:
    targets = tuple(
        Instance(host=t.host, port=t.port, weight=t.weight)
        for t in service.targets.all()
        if t.enabled and t.weight > 0
    )
    return ServiceConfig(
        id=service.pk,
        name=service.name,
        protocol=service.protocol,
        path=service.path.rstrip("/"),
        connect_timeout=service.connect_timeout,
        read_timeout=service.read_timeout,
        timeout=service.timeout,
        retries=service.retries,
        tls_verify=service.tls_verify,
        targets=targets,
        discovery=service.discovery,
        consul_service=service.consul_service or service.name,
        consul_tags=tuple(service.consul_tags or ()),
        consul_datacenter=service.consul_datacenter,
        consul_include_warning=service.consul_include_warning,
        load_balancing=service.load_balancing,
        hash_on=service.hash_on,
        hash_on_header=service.hash_on_header,
        hash_on_cookie=service.hash_on_cookie,
        max_concurrent_requests=service.max_concurrent_requests,
    )


def _consumer_config(consumer: Consumer) -> ConsumerConfig:
    return ConsumerConfig(
        id=consumer.pk,
        username=consumer.username,
        custom_id=consumer.custom_id,
        groups=frozenset(consumer.groups or ()),
    )


def _compile_route(
    route: Route,
    service: ServiceConfig,
    consumers: dict[int, ConsumerConfig],
    limits: LimitIndex,
) -> CompiledRoute:
    anonymous_id = route.anonymous_consumer_id
    return CompiledRoute(
        id=route.pk,
        name=route.name,
        service=service,
        paths=tuple(route.paths or ()),
        hosts=tuple(map(canonical_host, route.hosts or ())),
        methods=frozenset(route.methods or ()),
        headers=tuple(
            (name.lower(), frozenset(values)) for name, values in (route.headers or {}).items()
        ),
        priority=route.priority,
        strip_path=route.strip_path,
        preserve_host=route.preserve_host,
        connect_timeout=route.connect_timeout,
        read_timeout=route.read_timeout,
        timeout=route.timeout,
        max_response_duration=route.max_response_duration,
        websocket=route.websocket,
        max_body_size=route.max_body_size,
        authentication=route.authentication,
        anonymous_consumer=None if anonymous_id is None else consumers.get(anonymous_id),
        hide_credentials=route.hide_credentials,
        allowed_groups=frozenset(route.allowed_groups or ()),
        denied_groups=frozenset(route.denied_groups or ()),
        allowed_ips=parse_networks(route.allowed_ips or ()),
        denied_ips=parse_networks(route.denied_ips or ()),
        limits=limits.for_route(route.pk, service.id),
    )


def build_snapshot(version: str = "") -> Snapshot:
    """Read every enabled service and route; routes of disabled services are left out."""
    services = {
        s.name: _service_config(s)
        for s in Service.objects.filter(enabled=True).prefetch_related("targets")
    }
    by_id = {s.id: s for s in services.values()}
    consumers = {c.pk: _consumer_config(c) for c in Consumer.objects.filter(enabled=True)}
    limits = LimitIndex(map(compile_limit, RateLimit.objects.filter(enabled=True)), consumers)
    routes = [
        _compile_route(route, by_id[route.service_id], consumers, limits)
        for route in Route.objects.filter(enabled=True, service__enabled=True)
    ]
    jwt_credentials = {
        credential.key: compile_credential(credential)
        for credential in JWTCredential.objects.filter(consumer_id__in=consumers)
    }
    return Snapshot(
        version=version,
        routes=RouteTable(routes),
        services=services,
        consumers=consumers,
        jwt_credentials=jwt_credentials,
    )


class SnapshotHolder:
    """Holds this process's snapshot; the clock is an attribute so tests can move it."""

    clock = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            with self._lock:
                snapshot = self._snapshot
                return self._refresh(force=True) if snapshot is None else snapshot
        if self.clock() - self._checked_at < gateway_settings.CONFIG_POLL_INTERVAL:
            return snapshot
        if self._lock.acquire(blocking=False):  # one thread polls; the others serve the old one
            try:
                return self._refresh(force=False)
            finally:
                self._lock.release()
        return snapshot

    def held(self) -> tuple[Snapshot | None, bool]:
        """The snapshot held and whether its poll is due, without any I/O: the ASGI shell serves
        it and polls off the event loop (:meth:`get` may query the database)."""
        snapshot = self._snapshot
        due = self.clock() - self._checked_at >= gateway_settings.CONFIG_POLL_INTERVAL
        return snapshot, due

    def _refresh(self, *, force: bool) -> Snapshot:
        """The snapshot to serve from now on: rebuilt when forced or when the revision moved,
        else (or when the rebuild fails) the one held. Called with the lock held."""
        self._checked_at = self.clock()
        current = self._snapshot
        try:
            version = current_revision()
            if force or current is None or version != current.version:
                current = self._snapshot = build_snapshot(version)
        except Exception:
            if current is None:
                raise
            logger.exception("Configuration refresh failed; serving the previous snapshot")
        return current

    def invalidate(self) -> None:
        """Drop the snapshot so the next request rebuilds it (tests, management commands)."""
        with self._lock:
            self._snapshot = None
