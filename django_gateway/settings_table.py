"""Every ``GATEWAY`` setting, declared once: name, default, allowed values and one line of doc.

One row per setting, so that its default, its check and its docs cannot drift apart (they did
while each lived in a file of its own):

- :mod:`django_gateway.conf` takes its defaults from :data:`DEFAULTS`;
- :mod:`django_gateway.checks` walks :data:`SETTINGS` for E004 (unknown key) and E005 (each
  setting's rule, from :mod:`django_gateway.setting_rules`);
- ``tests/test_settings_doc.py`` fails when the summary of ``docs/settings.md`` does not show each
  setting's default, allowed values and doc line, in this order.

A new setting is one more row here, a section in ``docs/settings.md`` and a row in its summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .setting_rules import (
    Choice,
    Flag,
    HeaderNames,
    Networks,
    Number,
    OptionalAmount,
    Text,
    TLSVerify,
    Value,
    ValueRule,
)

MiB = 1024 * 1024
SECONDS_PER_DAY = 86400


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: Value
    rule: ValueRule
    #: One line of Markdown for the summary of ``docs/settings.md``; its section says the rest.
    doc: str


#: In the order of ``docs/settings.md``: grouped by feature, as its sections are.
SETTINGS: tuple[Setting, ...] = (
    # --- configuration changes ---
    Setting(
        "CONFIG_POLL_INTERVAL",
        1.0,
        Number(0.05, 3600, "seconds"),
        "Most seconds before a process sees a configuration change.",
    ),
    Setting(
        "CACHE_ALIAS",
        "default",
        Text("a key of `CACHES`"),
        "The cache holding the configuration version all processes share.",
    ),
    # --- client and upstream addresses ---
    Setting(
        "TRUSTED_PROXIES",
        [],
        Networks(),
        "Proxies in front of the gateway whose `X-Forwarded-*` headers are believed.",
    ),
    Setting(
        "ALLOW_LINK_LOCAL_UPSTREAMS",
        False,
        Flag(),
        "Allow upstreams on link-local and cloud metadata addresses.",
    ),
    # --- requests and responses ---
    Setting(
        "MAX_BODY_SIZE",
        10 * MiB,
        OptionalAmount("bytes", integer=True, zero=True),
        "Largest request body proxied (`None`: no limit); routes may override it.",
    ),
    Setting("VIA", "django-gateway", Text(), 'Token added to `Via` both ways (`""`: none).'),
    Setting(
        "REQUEST_ID_HEADER",
        "X-Request-ID",
        Text(),
        "Header carrying the request id to the upstream and back.",
    ),
    Setting(
        "REWRITE_LOCATION", True, Flag(), "Rewrite `Location` headers that point at the upstream."
    ),
    # --- upstream health and connections ---
    Setting(
        "EJECT_AFTER_FAILURES",
        3,
        Number(1, 1000, "failures"),
        "Consecutive failures that eject an instance.",
    ),
    Setting(
        "EJECT_COOLDOWN",
        10.0,
        Number(0.1, SECONDS_PER_DAY, "seconds"),
        "Seconds an ejected instance rests before one request probes it.",
    ),
    Setting(
        "POOL_MAX_IDLE_PER_HOST",
        32,
        Number(0, 10000, "connections"),
        "Idle keep-alive connections kept per instance and process (`0`: no reuse).",
    ),
    Setting(
        "POOL_IDLE_TIMEOUT",
        30.0,
        Number(0.1, 3600, "seconds"),
        "Seconds a pooled connection may idle before it is closed.",
    ),
    Setting(
        "RETRY_AFTER_UNAVAILABLE",
        5,
        Number(1, SECONDS_PER_DAY, "seconds"),
        "`Retry-After` of a 503 for a service without enabled instances.",
    ),
    Setting(
        "ASGI_OFFLOAD_THREADS",
        16,
        Number(1, 1024, "threads"),
        "Threads per ASGI process for the blocking work of cache misses (never the hot path).",
    ),
    # --- WebSockets (ASGI shell) ---
    Setting(
        "WEBSOCKET_IDLE_TIMEOUT",
        300.0,
        OptionalAmount("seconds", integer=False, zero=False),
        "Seconds without a message either way before a WebSocket is closed (`None`: never).",
    ),
    Setting(
        "WEBSOCKET_MAX_LIFETIME",
        None,
        OptionalAmount("seconds", integer=False, zero=False),
        "Longest a WebSocket stays open (`None`: no limit); a route's `max_response_duration` wins.",
    ),
    Setting(
        "WEBSOCKET_MAX_MESSAGE_SIZE",
        MiB,
        OptionalAmount("bytes", integer=True, zero=False),
        "Largest WebSocket message relayed either way (`None`: no limit).",
    ),
    # --- logging ---
    Setting(
        "ACCESS_LOG",
        True,
        Flag(),
        "One `INFO` record per proxied request on `django_gateway.access`.",
    ),
    # --- authentication ---
    Setting(
        "API_KEY_HEADERS",
        ["X-API-Key"],
        HeaderNames(),
        "Request headers an API key is read from; the first present wins.",
    ),
    Setting(
        "API_KEY_QUERY_PARAM",
        None,
        Text("parameter name", optional=True),
        "Query parameter an API key may be read from (`None`: keys stay out of URLs).",
    ),
    Setting(
        "API_KEY_CACHE_SIZE",
        10000,
        Number(0, 10_000_000, "keys"),
        "API keys remembered per process.",
    ),
    Setting(
        "LAST_USED_FLUSH_INTERVAL",
        60.0,
        Number(1, SECONDS_PER_DAY, "seconds"),
        "Seconds between batched writes of `APIKey.last_used_at`.",
    ),
    Setting("JWT_KEY_CLAIM", "iss", Text("claim name"), "The claim that picks the JWT credential."),
    Setting(
        "JWT_LEEWAY", 10, Number(0, 3600, "seconds"), "Clock skew allowed on `exp`, `nbf`, `iat`."
    ),
    Setting("JWT_REQUIRE_EXP", True, Flag(), "Refuse tokens without `exp`."),
    Setting(
        "JWT_MAXIMUM_EXPIRATION",
        None,
        OptionalAmount("seconds", integer=False, zero=False),
        "Longest token lifetime accepted (`None`: any).",
    ),
    Setting(
        "JWT_COOKIE",
        None,
        Text("cookie name", optional=True),
        "Cookie the token is read from without `Authorization: Bearer`.",
    ),
    Setting(
        "JWT_GROUPS_CLAIM",
        None,
        Text("claim name", optional=True),
        "Claim whose groups are added to the consumer's.",
    ),
    Setting(
        "JWT_MAX_TOKEN_BYTES",
        8192,
        Number(256, MiB, "bytes"),
        "Longer tokens are refused before any parsing.",
    ),
    Setting(
        "JWT_CACHE_SIZE",
        4096,
        Number(0, 1_000_000, "tokens"),
        "Verified tokens remembered per process (`0`: verify every request).",
    ),
    Setting(
        "JWKS_CACHE_SECONDS",
        300,
        Number(1, 7 * SECONDS_PER_DAY, "seconds"),
        "Seconds a fetched JWKS document is used.",
    ),
    Setting(
        "JWKS_MIN_REFRESH_INTERVAL",
        30,
        Number(0, SECONDS_PER_DAY, "seconds"),
        "Fewest seconds between two fetches of one JWKS URL.",
    ),
    Setting("JWKS_TIMEOUT", 2.0, Number(0.05, 60, "seconds"), "Timeout of a JWKS fetch."),
    Setting(
        "AUTH_FAILURE_LIMIT",
        20,
        Number(0, 1_000_000, "failures"),
        "Failed authentications per client address before 429 (`0`: off).",
    ),
    Setting(
        "AUTH_FAILURE_WINDOW",
        60,
        Number(1, SECONDS_PER_DAY, "seconds"),
        "The counting window, and how long an address stays blocked.",
    ),
    # --- rate limiting ---
    Setting(
        "RATE_LIMIT_CACHE_ALIAS",
        None,
        Text("a django-redis alias in `CACHES`", optional=True),
        "The cache whose Redis holds the counters (`None`: `CACHE_ALIAS`).",
    ),
    Setting("RATE_LIMIT_KEY_PREFIX", "gateway:rl", Text(), "Prefix of every counter key."),
    Setting(
        "RATE_LIMIT_TIMEOUT",
        0.1,
        Number(0.001, 5, "seconds"),
        "Seconds a Redis call may take before Redis counts as unreachable.",
    ),
    Setting(
        "RATE_LIMIT_RETRY_INTERVAL",
        1.0,
        Number(0, 3600, "seconds"),
        "Seconds a failed Redis is left alone (`0`: tried on every request).",
    ),
    Setting("RATE_LIMIT_HEADERS", True, Flag(), "Send `RateLimit-*` and `X-RateLimit-*` headers."),
    Setting(
        "RATE_LIMIT_LOCAL_FALLBACK",
        True,
        Flag(),
        "Without django-redis, count in each process's memory.",
    ),
    # --- Consul discovery ---
    Setting(
        "CONSUL_ADDRESS",
        None,
        Text("agent address", optional=True),
        "The Consul agent, as `host:port`, `[IPv6]:port` or `scheme://host:port`.",
    ),
    Setting(
        "CONSUL_SCHEME",
        None,
        Choice(("http", "https", None)),
        "How to reach Consul (`None`: from the address or the environment).",
    ),
    Setting(
        "CONSUL_TOKEN",
        None,
        Text("ACL token", optional=True),
        "Consul ACL token; beats `CONSUL_HTTP_TOKEN`.",
    ),
    Setting(
        "CONSUL_VERIFY",
        None,
        TLSVerify(),
        "Whether, or against which CA bundle, Consul's certificate is verified.",
    ),
    Setting(
        "CONSUL_CERT",
        None,
        Text("PEM file path", optional=True),
        "Client certificate for Consul's TLS.",
    ),
    Setting(
        "CONSUL_KEY",
        None,
        Text("PEM file path", optional=True),
        "The key of `CONSUL_CERT`, when in a file of its own.",
    ),
    Setting(
        "CONSUL_DATACENTER",
        None,
        Text("datacenter name", optional=True),
        "Datacenter queried for services that name none.",
    ),
    Setting(
        "CONSUL_TIMEOUT",
        5.0,
        Number(0.05, 300, "seconds"),
        "Seconds to connect to Consul or get its answer.",
    ),
    Setting(
        "CONSUL_WAIT",
        55.0,
        Number(0.1, 600, "seconds"),
        "Seconds a blocking query may wait for a change.",
    ),
    Setting(
        "CONSUL_COLD_START_TIMEOUT",
        2.0,
        Number(0, 60, "seconds"),
        "Seconds a first request may wait for Consul's first answer.",
    ),
    Setting(
        "CONSUL_MAX_STALE",
        300.0,
        Number(0, 7 * SECONDS_PER_DAY, "seconds"),
        "Seconds the last good answer is served while Consul fails.",
    ),
    Setting(
        "CONSUL_BACKOFF_MIN",
        1.0,
        Number(0.01, 3600, "seconds"),
        "First delay before retrying a failed Consul query.",
    ),
    Setting(
        "CONSUL_BACKOFF_MAX",
        30.0,
        Number(0.01, 3600, "seconds"),
        "Longest delay between retries of a failing Consul query.",
    ),
    Setting(
        "CONSUL_MIN_QUERY_INTERVAL",
        1.0,
        Number(0, 3600, "seconds"),
        "Seconds between a watch's queries after a burst of 2 (`0`: no limit).",
    ),
)

#: Name to default, for :mod:`django_gateway.conf`; read-only, as the table is.
DEFAULTS: Mapping[str, Value] = MappingProxyType({s.name: s.default for s in SETTINGS})
