"""What the HTTP benchmark measures: one :class:`Target` per table row, in the order of a round.

A target with a ``variant`` gets its own gunicorn; one with a ``server`` is another path (or
credential) on that target's gunicorn, so the rows of one server differ only in the route taken.
:mod:`benchmarks.baseline` adds twins of the gateway's rows that run another commit's package.
"""

from __future__ import annotations

from dataclasses import dataclass

from .payload import UPSTREAM_PATH

#: The target whose gunicorn serves every django-gateway route but the Unix-socket rate limit.
GATEWAY = "gateway"


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    variant: str | None  # BENCH_VARIANT of its gunicorn, None for the upstream itself
    path: str
    server: str | None = None  # served by another target's gunicorn (same settings, same process)
    credential: str | None = None  # "key" or "jwt": sent as X-API-Key / Authorization: Bearer
    rate_limit_transport: str = "tcp"  # how its gunicorn reaches the rate-limit Redis
    baseline_of: str | None = None  # this row again, on the --baseline commit's django_gateway


TARGETS = (
    Target("upstream", "upstream direct", None, UPSTREAM_PATH),
    Target("bare", "bare Django view", "bare", "/bare"),
    Target("revproxy", "django-revproxy", "revproxy", "/revproxy" + UPSTREAM_PATH),
    Target(GATEWAY, "django-gateway (open route)", "gateway", "/gw" + UPSTREAM_PATH),
    Target(
        "gateway-key", "django-gateway (API-key route)", None, "/gwkey" + UPSTREAM_PATH,
        server=GATEWAY, credential="key",
    ),
    Target(
        "gateway-jwt", "django-gateway (JWT RS256 route)", None, "/gwjwt" + UPSTREAM_PATH,
        server=GATEWAY, credential="jwt",
    ),
    Target(
        "gateway-limited", "django-gateway (2 rate limits, Redis over TCP)", None,
        "/gwlimit" + UPSTREAM_PATH, server=GATEWAY,
    ),
    Target(
        "gateway-limited-unix", "django-gateway (2 rate limits, Redis on a Unix socket)",
        "gateway", "/gwlimit" + UPSTREAM_PATH, rate_limit_transport="unix",
    ),
)  # fmt: skip


def credential_headers(target: Target, credentials: dict[str, str]) -> list[str]:
    if target.credential == "key":
        return [f"X-API-Key: {credentials['key']}"]
    if target.credential == "jwt":
        return [f"Authorization: Bearer {credentials['jwt']}"]
    return []
