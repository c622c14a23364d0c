"""The route tester (``manage.py gateway_test_route``): why a request goes where it goes.

The winner always comes from :meth:`RouteTable.match`, the matcher that serves traffic, so the
tester can never disagree with the gateway about *which* route wins. This module only explains:

- for a route whose conditions do not fit, each condition is asked of the same matcher in isolation
  (a one-route table holding only that host, or only that path), so "host ... does not match" means
  exactly what the matcher thinks, wildcards and ports included; methods and headers are checked
  with :meth:`CompiledRoute.accepts`, the matcher's own check;
- for a route that fits but lost, the precedence components of ``routing`` (host class, regex before
  prefix, prefix length, priority, conditions, id) of its best entry are compared with the winner's.

What would go upstream is the forwarder's own plan (:func:`proxy.plan.plan_request`) for a real
:class:`Exchange` built like the middleware's, sent to an instance discovery gives (Consul
services included); refusals are the gateway's own errors (``admission.host_refusal``, the
plan's body framing, discovery's 503), so the tester says exactly what a client would get.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .admission import host_refusal
from .config import CompiledRoute, ConsumerConfig
from .discovery import instances_for
from .exceptions import GatewayError, ServiceUnavailable
from .hosts import canonical_host
from .pipeline import new_exchange
from .proxy.plan import headers_for, plan_request
from .proxy.pool import endpoint_for
from .routing import RouteMatch, RouteTable
from .runtime import runtime
from .snapshot import Snapshot

HOST_CLASSES = ("exact host", "wildcard host", "no host")


@dataclass(frozen=True, slots=True)
class Precedence:
    """One (host pattern, path) entry of a route, ranked as ``routing._make_entry`` ranks it."""

    route: CompiledRoute
    host: str | None  # the route's host pattern, None for a route without hosts
    path: str  # a prefix or a "~regex"

    @property
    def host_class(self) -> int:
        return 2 if self.host is None else 1 if self.host.startswith("*.") else 0

    @property
    def regex(self) -> bool:
        return self.path.startswith("~")

    @property
    def segments(self) -> int:
        return -1 if self.regex else len([s for s in self.path.split("/") if s])

    @property
    def key(self) -> tuple[int, ...]:
        """Equal to the routing key of this entry (lower sorts first within one host index)."""
        host = self.host
        if host is None:
            rank: tuple[int, ...] = (2,)
        elif host.startswith("*."):  # host_class 1
            rank = (1, -host[2:].count("."))
        else:
            rank = (0,)
        r = self.route
        return (*rank, 0 if self.regex else 1, -self.segments, -r.priority, -r.specificity, r.id)

    def order(self, request_host: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The order ``RouteTable`` visits this entry's host index for this host, then the key."""
        if self.host is None:
            index: tuple[int, ...] = (2,)
        elif self.host_class == 1:  # "*.a.b:8080" and "*.a.b" tie here; routing sorts them stably
            index = (1, -self.host.count("."))
        else:
            index = (0, self.host != canonical_host(request_host))  # "name:port" first
        return (index, self.key)

    def tried_before(self, other: Precedence, request_host: str) -> bool:
        """Whether the matcher certainly tries this entry before ``other`` for this host."""
        mine, theirs = self.order(request_host), other.order(request_host)
        if mine[0] != theirs[0]:
            return mine[0] < theirs[0]
        return self.host == other.host and mine[1] < theirs[1]  # one index: the key decides


def precedence_key(route: CompiledRoute, host: str | None, path: str) -> tuple[int, ...]:
    """The precedence key ``routing`` gives ``route`` under one host pattern and one path."""
    return Precedence(route, host, path).key


@dataclass(frozen=True, slots=True)
class Reason:
    kind: str  # "host", "path", "method", "header" or "outranked"
    detail: str


@dataclass(frozen=True, slots=True)
class Loser:
    route: CompiledRoute
    reasons: tuple[Reason, ...]

    @property
    def reason(self) -> str:
        return "; ".join(r.detail for r in self.reasons)


@dataclass(frozen=True, slots=True)
class UpstreamPreview:
    service: str
    method: str
    target: str  # encoded path and query, as on the request line
    url: str | None  # None when the service has no target to send to
    instances: int
    headers: tuple[tuple[str, str], ...]
    #: The service's cap on requests in flight per gateway process (None: unlimited).
    max_concurrent_requests: int | None = None
    websocket: bool = False  # the route carries WebSocket upgrades (ASGI shell)


@dataclass(frozen=True, slots=True)
class Explanation:
    method: str
    scheme: str
    host: str
    path: str  # canonical
    query: str
    match: RouteMatch | None
    winner: Precedence | None
    losers: tuple[Loser, ...]
    upstream: UpstreamPreview | None
    refusal: str | None  # "503 ...": the gateway would answer itself instead of proxying
    consumer: ConsumerConfig | None = None  # whose plan the rate limits are shown for

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` and the API: routes by name, headers as ``[name, value]``."""
        match, winner, up = self.match, self.winner, self.upstream
        return {
            "request": {
                "method": self.method,
                "scheme": self.scheme,
                "host": self.host,
                "path": self.path,
                "query": self.query,
            },
            "matched": match is not None,
            "winner": match
            and winner
            and {
                **_route_dict(winner.route),
                "host": winner.host,
                "path": winner.path,
                "matched": match.matched,
                "remainder": match.remainder,
            },
            "losers": [
                {**_route_dict(lost.route), "reasons": [_fields(r) for r in lost.reasons]}
                for lost in self.losers
            ],
            "access": access_rules(match.route, self.consumer) if match else [],
            "upstream": up and {**_fields(up), "headers": [list(h) for h in up.headers]},
            "refusal": self.refusal,
        }


_MODES = {
    "key": "an API key",
    "jwt": "a JWT (Authorization: Bearer)",
    "any": "an API key or a JWT",
}


def access_rules(route: CompiledRoute, consumer: ConsumerConfig | None = None) -> list[str]:
    """What a request must bring to pass the route's access stages, in the order they run,
    ending with the rate limits that would count it (``consumer``'s plan where it has one).

    The tester previews routing and forwarding; credentials are not checked, so this says what
    would be asked of the request instead.
    """
    rules = []
    if route.allowed_ips:
        rules.append(f"client address in {', '.join(map(str, route.allowed_ips))} (else 403)")
    if route.denied_ips:
        rules.append(f"client address not in {', '.join(map(str, route.denied_ips))} (else 403)")
    if route.authentication in _MODES:
        anonymous = route.anonymous_consumer
        fallback = (
            f"else it proceeds as anonymous consumer {anonymous.username!r}"
            if anonymous
            else "else 401"
        )
        hidden = "removed before proxying" if route.hide_credentials else "forwarded as sent"
        rules.append(f"{_MODES[route.authentication]}, {fallback}; the credential is {hidden}")
    if route.allowed_groups:
        rules.append(f"consumer in one of groups {sorted(route.allowed_groups)} (else 401/403)")
    if route.denied_groups:
        rules.append(f"consumer in none of groups {sorted(route.denied_groups)} (else 403)")
    rules.extend(limit_rules(route, consumer))
    return rules or ["none: the route is open"]


_COUNTED_BY = {
    "consumer": "consumer",
    "credential": "credential",
    "ip": "client IP",
}


def limit_rules(route: CompiledRoute, consumer: ConsumerConfig | None = None) -> list[str]:
    """The route's rate limits as the throttle stage would apply them: the limits of
    ``consumer``'s plan replace the general ones of the same scope and period."""
    if route.limits is None:
        return []
    rules = []
    for limit in route.limits.for_consumer(consumer.id if consumer else None):
        if limit.limit_by == "header":
            header = limit.header_key.removeprefix("HTTP_").replace("_", "-").title()
            who = f"header {header}"
        else:
            who = _COUNTED_BY[limit.limit_by]
        kind, _ = limit.scope
        scope = {"route": "this route", "service": f"service {route.service.name}"}.get(
            kind, "every route"
        )
        plan = f", {consumer.username}'s plan" if limit.consumer_id is not None and consumer else ""
        fallback = "" if limit.limit_by == "ip" else " (client IP when anonymous)"
        rules.append(
            f"at most {limit.limit} per {limit.period} per {who}{fallback} on {scope}{plan} "
            "(else 429)"
        )
    return rules


def _route_dict(route: CompiledRoute) -> dict[str, Any]:
    return {"route": route.name, "service": route.service.name}


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _alone(route: CompiledRoute, *, hosts: tuple[str, ...] = (), path: str = "/") -> RouteTable:
    """A table holding one condition of ``route``: asks the real matcher about it alone."""
    return RouteTable([replace(route, hosts=hosts, paths=(path,), methods=frozenset(), headers=())])


def _entries(
    route: CompiledRoute, method: str, host: str, path: str, environ: Mapping[str, Any]
) -> tuple[list[Reason], list[tuple[Precedence, RouteMatch]]]:
    """Why ``route`` cannot take the request, or (no reasons) every entry of it that fits."""
    reasons = []
    hosts = [h for h in route.hosts if _alone(route, hosts=(h,)).match("GET", host, "/")]
    if route.hosts and not hosts:
        reasons.append(Reason("host", f"host {host} does not match {list(route.hosts)}"))
    fits = {
        p: m for p in route.paths or ("/",) if (m := _alone(route, path=p).match("GET", "", path))
    }
    if not fits:
        prefixes = [p for p in route.paths if not p.startswith("~")]
        if prefixes:
            starts = " or ".join(prefixes)
            why = f"path {path} does not start with {starts} on a segment boundary"
            reasons.append(Reason("path", why))
        reasons.extend(
            Reason("path", f"regex {p} does not match") for p in route.paths if p.startswith("~")
        )
    for kind, alone in (
        ("method", replace(route, headers=())),
        ("header", replace(route, methods=frozenset())),
    ):
        refusal = alone.accepts(method, environ)
        if refusal:
            reasons.append(Reason(kind, refusal))
    if reasons:
        return reasons, []
    patterns: list[str | None] = list(hosts) or [None]
    return [], [(Precedence(route, h, p), m) for h in patterns for p, m in fits.items()]


def _why_first(win: Precedence, lost: Precedence) -> str:
    """The first precedence component on which the winning entry beats the losing one."""
    if win.host != lost.host:  # different host indexes: the host decided
        if win.host_class < lost.host_class:
            return (
                f"{HOST_CLASSES[win.host_class]} beats {HOST_CLASSES[lost.host_class]}"
                f" ({win.host or '*'} vs {lost.host or '*'})"
            )
        win_host, lost_host = win.host or "", lost.host or ""  # both set when win's is a wildcard
        if win.host_class == 1 and win_host.count(".") > lost_host.count("."):
            return f"wildcard {win.host} is more specific than {lost.host}"
        return f"host {win.host} is tried before {lost.host}"
    if win.regex != lost.regex:
        return "regex routes are tried before prefixes"
    w, lo = win.route, lost.route
    if win.segments != lost.segments:
        return f"longer path prefix ({win.segments} segments vs {lost.segments})"
    if w.priority != lo.priority:
        return f"higher priority ({w.priority} vs {lo.priority})"
    if w.specificity != lo.specificity:
        return f"more conditions ({w.specificity} vs {lo.specificity})"
    return f"older route (id {w.id} vs {lo.id})"


def explain(
    table: RouteTable,
    method: str,
    host: str,
    path: str,
    environ: Mapping[str, Any] | None = None,
    consumer: ConsumerConfig | None = None,
) -> Explanation:
    """Explain how ``table`` routes a request for the canonical ``path``.

    ``environ`` is a WSGI environ (``HTTP_*`` headers, ``QUERY_STRING``, ``REMOTE_ADDR``...);
    missing keys get the values a plain HTTP/1.1 request from 127.0.0.1 would have. The rate
    limits are listed as they apply to ``consumer`` (anonymous when ``None``).
    """
    env = _full_environ(method, host, path, environ or {})
    match = table.match(method, host, path, env)
    checked = {r.id: _entries(r, method, host, path, env) for r in table.routes}
    winner = None
    if match is not None:
        fitting = [e for e, m in checked[match.route.id][1] if m.matched == match.matched]
        fitting = fitting or [e for e, _ in checked[match.route.id][1]]
        winner = min(fitting, key=lambda e: e.order(host)) if fitting else None
    losers = []
    for route in table.routes:
        if match is not None and route.id == match.route.id:
            continue
        reasons, fits = checked[route.id]
        if not reasons:
            best = min((e for e, _ in fits), key=lambda e: e.order(host))
            if winner is None or best.tried_before(winner, host):
                detail = "fits, yet the matcher chose otherwise (a bug: please report it)"
            else:
                detail = f"outranked by {winner.route.name}: {_why_first(winner, best)}"
            reasons = [Reason("outranked", detail)]
        losers.append(Loser(route, tuple(reasons)))
    scheme, query = env["wsgi.url_scheme"], env.get("QUERY_STRING", "")
    upstream, refusal = _upstream(match, path, env) if match else (None, None)
    return Explanation(
        method, scheme, host, path, query, match, winner, (*losers,), upstream, refusal, consumer
    )


def _full_environ(method: str, host: str, path: str, given: Mapping[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": "",
        "SERVER_NAME": host.partition(":")[0] or "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input_terminated": True,
    }
    if host:
        env["HTTP_HOST"] = host
    env.update(given)
    env["wsgi.input"] = io.BytesIO(b"")  # the tester never sends a body, only its framing
    return env


def _upstream(
    match: RouteMatch, path: str, env: dict[str, Any]
) -> tuple[UpstreamPreview, str | None]:
    """What the forwarder would send for this match, and why the gateway might answer itself.

    Everything comes from the gateway's own functions: the Host refusals (``host_refusal``), the
    plan (``plan_request``: target, headers, body framing) and the instances (discovery, so a
    Consul service shows its live instances, or the 503 the gateway would give). Credentials are
    not looked up, so the exchange carries an empty snapshot.
    """
    host = canonical_host(env.get("HTTP_HOST", ""))
    exchange = new_exchange(env, path, host, match, Snapshot("explain", RouteTable(()), {}))
    service = match.route.service
    refusal = _said(host_refusal(env, host))
    try:
        plan = plan_request(exchange)
    except GatewayError as error:  # the body's framing: 411, 413, 501
        refusal = refusal or _said(error)
        plan = plan_request(exchange, body=False)
    try:
        instances = instances_for(service, runtime.watchers)
    except ServiceUnavailable as error:
        refusal = refusal or _said(error)
        instances = ()
    url = None
    headers = list(plan.headers)
    if instances:
        endpoint = endpoint_for(
            service.protocol, instances[0].host, instances[0].port, service.tls_verify
        )
        headers = list(headers_for(plan, endpoint))
        url = endpoint.origin + plan.target
    headers = [h for h in headers if h != ("Host", "")]
    if plan.body is not None:  # the transport adds the framing header after the others
        name, _, value = plan.body.framing_header.partition(": ")
        headers.append((name, value))
    preview = UpstreamPreview(
        service.name,
        exchange.method,
        plan.target,
        url,
        len(instances),
        tuple(headers),
        service.max_concurrent_requests,
        match.route.websocket,
    )
    return preview, refusal


def _said(error: GatewayError | None) -> str | None:
    """How the gateway's answer reads in the tester: ``"503 Service Unavailable: ..."``."""
    return None if error is None else f"{error.status} {error.title}: {error.detail}"
