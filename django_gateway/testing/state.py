"""Reset the gateway's per-process state between tests.

The gateway keeps a configuration snapshot, passive-health verdicts, balancer positions and a
connection pool per process (DESIGN §5). A test that changes routes inside a rolled-back
transaction, or that ejected an instance on purpose, should start the next test from scratch::

    @pytest.fixture(autouse=True)
    def fresh_gateway():
        reset_gateway_state()
        yield
        reset_gateway_state()
"""

from __future__ import annotations


def reset_gateway_state() -> None:
    """Forget the snapshot, ejections, balancer positions, pooled connections, brute-force blocks,
    queued key uses, fetched JWKS documents, the rate limiter's breaker, the Consul watchers (their
    threads are stopped and their cached instances dropped) and the event counters of this
    process. Counts already in Redis stay: give each test its own keys or delete them."""
    from ..auth import jwks, usage
    from ..auth.bruteforce import failures
    from ..balancing import balancers
    from ..discovery import reset_discovery
    from ..health import health
    from ..metrics import counters
    from ..proxy import forwarder
    from ..snapshot import holder
    from ..throttling.engine import reset_limiter
    from ..throttling.stage import outage_warnings

    holder.invalidate()
    health.reset()
    balancers.reset()
    forwarder.reset_transport()
    failures.reset()
    usage.recorder.reset()
    jwks.cache.reset()
    reset_limiter()
    outage_warnings.reset()
    reset_discovery()
    counters.clear()
