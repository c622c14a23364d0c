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

from ..runtime import runtime


def reset_gateway_state() -> None:
    """Forget everything this process learnt: one call into the runtime
    (:meth:`django_gateway.runtime.Runtime.reset`). Counts already in Redis stay: give each test
    its own keys or delete them."""
    runtime.reset()
