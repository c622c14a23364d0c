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
    queued key uses and fetched JWKS documents of this process."""
    from ..auth import jwks, usage
    from ..auth.bruteforce import failures
    from ..balancing import balancers
    from ..health import health
    from ..proxy import forwarder
    from ..snapshot import holder

    holder.invalidate()
    health.reset()
    balancers.reset()
    forwarder.reset_transport()
    failures.reset()
    usage.recorder.reset()
    jwks.cache.reset()
