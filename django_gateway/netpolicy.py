"""Address rules: which upstream addresses may be dialled, and who the client really is.

Both answers depend on ``GATEWAY`` settings (``ALLOW_LINK_LOCAL_UPSTREAMS``, ``TRUSTED_PROXIES``)
and both are on the request path, so parsed settings are cached in :mod:`django_gateway.conf`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

from .conf import gateway_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata endpoints live on link-local addresses (AWS, GCP, Azure, OpenStack: 169.254.169.254;
# AWS IPv6: fd00:ec2::254, which is not link-local and so is named explicitly), plus well-known names.
_METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254")}
_METADATA_HOSTNAMES = {
    "metadata",
    "metadata.google.internal",
    "instance-data",
    "instance-data.ec2.internal",
}


def parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def forbidden_upstream_reason(host: str) -> str | None:
    """Why ``host`` (an IP literal or a name) may not be an upstream, or ``None`` if it may.

    Link-local and metadata addresses give a service that reaches them the cloud instance's
    credentials (an SSRF staple), so they are refused unless ``ALLOW_LINK_LOCAL_UPSTREAMS`` is on.
    """
    if gateway_settings.ALLOW_LINK_LOCAL_UPSTREAMS:
        return None
    name = host.strip().strip("[]").rstrip(".").lower()
    if name in _METADATA_HOSTNAMES:
        return f"{host} is a cloud metadata host name"
    ip = parse_ip(name)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA_ADDRESSES:
        return f"{host} is a cloud metadata address"
    if ip.is_link_local:
        return f"{host} is a link-local address (cloud metadata lives there)"
    if ip.is_multicast or ip.is_unspecified:
        return f"{host} is not a unicast address"
    return None


class ForbiddenAddress(OSError):
    """A host name resolved only to addresses :func:`forbidden_upstream_reason` refuses."""


#: One ``socket.getaddrinfo`` result: family, type, protocol, canonical name, and the socket
#: address ``socket.connect`` takes.
AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


def allowed_addresses(host: str, port: int) -> list[AddressInfo]:
    """``getaddrinfo`` results for ``host`` minus the forbidden ones, for every outgoing connection
    (upstreams, JWKS): checking the name alone would let DNS point it at a metadata address.
    Callers connect to these very addresses, so nothing can re-resolve between check and use.
    Raises ``socket.gaierror`` when the name does not resolve."""
    return screen_addresses(host, socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))


def screen_addresses(host: str, infos: Sequence[AddressInfo]) -> list[AddressInfo]:
    """``infos`` (``host`` resolved, by whichever resolver) minus the forbidden addresses; raises
    :class:`ForbiddenAddress` when none is left. The event loop's resolver uses it too."""
    allowed: list[AddressInfo] = [
        info for info in infos if not forbidden_upstream_reason(str(info[4][0]))
    ]
    if not allowed:
        reasons = {forbidden_upstream_reason(str(info[4][0])) for info in infos}
        raise ForbiddenAddress(
            f"{host} resolves only to refused addresses, forbidden as upstreams: "
            + "; ".join(sorted(r for r in reasons if r))
        )
    return allowed


def parse_networks(cidrs: Sequence[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def trusted_networks() -> tuple[IPNetwork, ...]:
    return gateway_settings.derived(
        "trusted_networks", lambda: parse_networks(gateway_settings.TRUSTED_PROXIES)
    )


def _is_trusted(ip: IPAddress | None, networks: tuple[IPNetwork, ...]) -> bool:
    return ip is not None and any(ip in network for network in networks)


def peer_is_trusted(remote_addr: str) -> bool:
    networks = trusted_networks()
    return bool(networks) and _is_trusted(parse_ip(remote_addr), networks)


def client_address(remote_addr: str, forwarded_for: str | None) -> str:
    """The client's address per DESIGN §4.

    ``REMOTE_ADDR`` unless that peer is a trusted proxy; then walk ``X-Forwarded-For`` from the
    right and take the first entry that is not itself trusted. Garbage entries end the walk, since
    anything left of them was written by someone we cannot vouch for.
    """
    networks = trusted_networks()
    if not networks or not forwarded_for or not _is_trusted(parse_ip(remote_addr), networks):
        return remote_addr
    candidate = remote_addr
    for entry in reversed(forwarded_for.split(",")):
        ip = parse_ip(entry)
        if ip is None:
            break
        candidate = str(ip)
        if not _is_trusted(ip, networks):
            break
    return candidate
