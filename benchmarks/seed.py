"""Create the benchmark database: migrate, then one service (the upstream) and its routes.

Routes: /gw (open), /gwlimit (two limits by IP), /gwkey and /gwjwt (API key, RS256 JWT),
/gwkeylimit (API key and two limits by consumer); /flap (Consul) and /slow, /sse (the scenarios'
asyncio upstream) when their environment variables are set.

Run by :mod:`benchmarks.run` as ``python -m benchmarks.seed`` with the benchmark environment set.
The rows go through ``full_clean`` like an admin edit would, so the benchmark route is a valid one.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlparse

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from django_gateway.models import Route, Service, Target

    call_command("migrate", verbosity=0, interactive=False)
    upstream = urlparse(settings.UPSTREAM_URL)
    service = Service(name="bench-upstream")
    service.full_clean()
    service.save()
    target = Target(service=service, host=upstream.hostname, port=upstream.port)
    target.full_clean()
    target.save()
    route = Route(name="bench-open", service=service, paths=["/gw"], strip_path=True)
    route.full_clean()
    route.save()
    seed_limited_route(service)
    credentials = seed_authenticated_routes(service)
    seed_key_limited_route(service)
    if os.environ.get("BENCH_CONSUL_ADDRESS"):
        seed_consul_route()
    if os.environ.get("BENCH_ASYNC_UPSTREAM_URL"):
        seed_scenario_routes(os.environ["BENCH_ASYNC_UPSTREAM_URL"])
    path = os.environ.get("BENCH_CREDENTIALS_PATH")
    if path:
        with open(path, "w") as handle:
            json.dump(credentials, handle)


def seed_limited_route(service) -> None:  # type: ignore[no-untyped-def]
    """/gwlimit: the open route plus two rate limits by client IP that the run never exhausts,
    so every request pays for the limiter's round trip (one EVALSHA for both)."""
    from django_gateway.models import RateLimit, Route

    route = Route(name="bench-limited", service=service, paths=["/gwlimit"], strip_path=True)
    route.full_clean()
    route.save()
    for period in ("minute", "hour"):
        limit = RateLimit(route=route, limit=1_000_000_000, period=period, limit_by="ip")
        limit.full_clean()
        limit.save()


def seed_key_limited_route(service) -> None:  # type: ignore[no-untyped-def]
    """/gwkeylimit: an API-key route (the same consumer and key as /gwkey) with two rate limits
    by consumer that the run never exhausts: authentication, then one EVALSHA for both limits."""
    from django_gateway.models import RateLimit, Route

    route = Route(
        name="bench-key-limited", service=service, paths=["/gwkeylimit"], strip_path=True,
        authentication="key",
    )  # fmt: skip
    route.full_clean()
    route.save()
    for period in ("minute", "hour"):
        limit = RateLimit(route=route, limit=1_000_000_000, period=period, limit_by="consumer")
        limit.full_clean()
        limit.save()


def seed_scenario_routes(url: str) -> None:
    """/slow and /sse: open routes to ``benchmarks.async_upstream`` (the isolation and SSE
    scenarios of benchmarks/scenarios.py), with default timeouts and no concurrency cap."""
    from django_gateway.models import Route, Service, Target

    upstream = urlparse(url)
    service = Service(name="bench-async")
    service.full_clean()
    service.save()
    target = Target(service=service, host=upstream.hostname, port=upstream.port)
    target.full_clean()
    target.save()
    for name, path in (("bench-slow", "/slow"), ("bench-sse", "/sse")):
        route = Route(name=name, service=service, paths=[path], strip_path=True)
        route.full_clean()
        route.save()


def seed_consul_route() -> None:
    """/flap: an open route to the service "flap" found in Consul (benchmarks/flapping.py)."""
    from django_gateway.models import Route, Service

    service = Service(name="bench-flap", discovery="consul", consul_service="flap")
    service.full_clean()
    service.save()
    route = Route(name="bench-flap", service=service, paths=["/flap"], strip_path=True)
    route.full_clean()
    route.save()


def seed_authenticated_routes(service) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """An API-key route (/gwkey) and an RS256 JWT route (/gwjwt) on the same upstream, and the
    credentials wrk sends: a fresh key and a token valid for a day."""
    import time

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from django_gateway.models import Consumer, JWTCredential, Route
    from django_gateway.operations import issue_key

    consumer = Consumer.objects.create(username="bench", custom_id="bench-1", groups=["bench"])
    _, api_key = issue_key(consumer, name="benchmark")
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    credential = JWTCredential(
        consumer=consumer, key="bench-issuer", algorithm="RS256", public_key=public_pem.decode()
    )
    credential.full_clean()
    credential.save()
    token = jwt.encode(
        {"iss": "bench-issuer", "sub": "bench", "exp": int(time.time()) + 86400},
        private_key,
        algorithm="RS256",
    )
    for name, path, mode in (("bench-key", "/gwkey", "key"), ("bench-jwt", "/gwjwt", "jwt")):
        route = Route(name=name, service=service, paths=[path], authentication=mode)
        route.full_clean()
        route.save()
    return {"key": api_key, "jwt": token}


if __name__ == "__main__":
    main()
