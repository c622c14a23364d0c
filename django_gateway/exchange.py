"""The per-request state every stage reads and writes: one typed object, never an untyped dict.

A matched request becomes an :class:`Exchange` (built by either shell with
:func:`pipeline.new_exchange`; no Django ``HttpRequest`` is needed);
each stage (authentication, access rules, rate limits, forwarding) takes it, reads the fields the
earlier stages set and sets its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .config import CompiledRoute, CredentialUse, Identity
from .routing import RouteMatch
from .snapshot import Snapshot


@dataclass(slots=True)
class Exchange:
    #: The request in CGI/WSGI names (``HTTP_*``, ``QUERY_STRING``, ``REMOTE_ADDR``...): the WSGI
    #: server's own environ, or the ASGI shell's translation of its scope (one vocabulary for
    #: every stage, whichever shell serves the request).
    environ: dict[str, Any]
    scheme: str  # "http" or "https", as the client reached the gateway
    method: str
    path: str  # canonical decoded path
    host: str  # hosts.canonical_host of the Host header ("" when the client sent none)
    match: RouteMatch
    request_id: str
    peer: str
    client_ip: str
    peer_trusted: bool
    snapshot: Snapshot
    started: float = field(default_factory=time.perf_counter)
    upstream: str = ""  # "host:port" of the instance that answered (or failed last)
    tries: int = 0
    identity: Identity | None = None  # set by authentication
    credential_use: CredentialUse = field(default_factory=CredentialUse)  # for hide_credentials
    #: Headers for whatever response the request gets, errors included (RateLimit-*). A tuple,
    #: so the many requests that get none allocate nothing.
    response_headers: tuple[tuple[str, str], ...] = ()

    @property
    def route(self) -> CompiledRoute:
        return self.match.route
