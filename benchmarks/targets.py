"""What the HTTP benchmark measures: one :class:`Target` per table row, in the order of a round.

A target with a ``variant`` gets its own server; one with a ``server`` is another path (or
credential) on that target's server, so the rows of one server differ only in the route taken.
:mod:`benchmarks.baseline` adds twins of the gateway's rows that run another commit's package.

``shell`` says which server: gunicorn's gthread worker with ``benchmarks.wsgi`` (the WSGI rows),
uvicorn with ``benchmarks.asgi`` (the ASGI shell), gunicorn with uvicorn's worker and
``benchmarks.asgi``, or uvicorn with ``benchmarks.bare_asgi_proxy`` (no Django at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch

from .payload import UPSTREAM_PATH

#: The target whose gunicorn serves every django-gateway route but the Unix-socket rate limit.
GATEWAY = "gateway"
#: The target whose uvicorn serves every route of the ASGI shell.
ASGI = "asgi"
#: The bare ASGI reverse proxy: the ceiling of a Python async data plane (DESIGN §7).
BARE_ASGI = "bare-asgi"

# Servers (Target.shell).
WSGI_GUNICORN = "gunicorn"  # gunicorn gthread, benchmarks.wsgi
UVICORN = "uvicorn"  # one uvicorn process, benchmarks.asgi
ASGI_GUNICORN = "gunicorn+uvicorn"  # gunicorn -k uvicorn_worker.UvicornWorker, benchmarks.asgi
BARE_UVICORN = "uvicorn (bare)"  # one uvicorn process, benchmarks.bare_asgi_proxy


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
    shell: str = WSGI_GUNICORN  # the server its variant runs under (servers of its own only)


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
    Target(
        BARE_ASGI, "bare ASGI proxy (uvicorn, no Django)", "bare-asgi", UPSTREAM_PATH,
        shell=BARE_UVICORN,
    ),
    Target(ASGI, "ASGI gateway (open route)", "asgi", "/gw" + UPSTREAM_PATH, shell=UVICORN),
    Target(
        "asgi-key", "ASGI gateway (API-key route)", None, "/gwkey" + UPSTREAM_PATH,
        server=ASGI, credential="key",
    ),
    Target(
        "asgi-jwt", "ASGI gateway (JWT RS256 route)", None, "/gwjwt" + UPSTREAM_PATH,
        server=ASGI, credential="jwt",
    ),
    Target(
        "asgi-limited", "ASGI gateway (2 rate limits, Redis over TCP)", None,
        "/gwlimit" + UPSTREAM_PATH, server=ASGI,
    ),
    Target(
        "asgi-key-limited", "ASGI gateway (API key + 2 rate limits, Redis over TCP)", None,
        "/gwkeylimit" + UPSTREAM_PATH, server=ASGI, credential="key",
    ),
    Target(
        "asgi-gunicorn", "ASGI gateway under gunicorn + UvicornWorker (open route)", "asgi",
        "/gw" + UPSTREAM_PATH, shell=ASGI_GUNICORN,
    ),
)  # fmt: skip


def selected(targets: tuple[Target, ...], only: str | None) -> tuple[Target, ...]:
    """The rows ``--only`` names (comma-separated keys or shell patterns such as ``asgi*``) and
    their ``--baseline`` twins, in table order; every row when ``only`` is empty."""
    if not only:
        return targets
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    chosen = tuple(  # a --baseline twin goes with its original
        t for t in targets if any(fnmatch(t.baseline_of or t.key, p) for p in patterns)
    )
    if not chosen:
        keys = ", ".join(t.key for t in targets)
        raise RuntimeError(f"--only {only!r} names no target; the targets are: {keys}")
    return chosen


def credential_headers(target: Target, credentials: dict[str, str]) -> list[str]:
    if target.credential == "key":
        return [f"X-API-Key: {credentials['key']}"]
    if target.credential == "jwt":
        return [f"Authorization: Bearer {credentials['jwt']}"]
    return []
