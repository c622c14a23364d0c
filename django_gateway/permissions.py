"""Authorization stages: per-route IP allow/deny lists and consumer-group ACLs.

IP rules run before authentication, so a refused network never gets to try credentials (or count
towards anyone's brute-force limit); group rules run after it. A request whose identity is
missing or anonymous and that a group rule would refuse gets 401 (credentials would help), an
identified consumer outside the groups gets 403 (they would not).
"""

from __future__ import annotations

from .auth.stage import challenges
from .exceptions import Forbidden, Unauthorized
from .exchange import Exchange
from .netpolicy import parse_ip


def restrict_ip(exchange: Exchange) -> None:
    route = exchange.route
    if not (route.allowed_ips or route.denied_ips):
        return
    ip = parse_ip(exchange.client_ip)
    if ip is None:
        raise Forbidden("The client address could not be read.")
    if any(ip in network for network in route.denied_ips):
        raise Forbidden("Requests from this address are not allowed on this route.")
    if route.allowed_ips and not any(ip in network for network in route.allowed_ips):
        raise Forbidden("Requests from this address are not allowed on this route.")


def check_groups(exchange: Exchange) -> None:
    route = exchange.route
    if not (route.allowed_groups or route.denied_groups):
        return
    identity = exchange.identity
    groups = identity.groups if identity is not None else frozenset()
    refused = bool(route.denied_groups & groups) or (
        bool(route.allowed_groups) and not route.allowed_groups & groups
    )
    if not refused:
        return
    if identity is None or identity.anonymous:
        raise Unauthorized(
            "This route needs an identified consumer.",
            www_authenticate=challenges(route.authentication) or None,
        )
    raise Forbidden("Your consumer groups are not allowed on this route.")
