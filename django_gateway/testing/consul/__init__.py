"""A Consul HTTP API double: a real server on loopback that answers like a Consul agent.

Discovery code is only as good as its handling of what Consul really sends, and mocks of a
client library test the mock. :class:`ConsulDouble` is a genuine HTTP/1.1 server, so the code
under test can use py-consul (or any HTTP client) unchanged::

    import consul

    with ConsulDouble() as double:
        double.catalog.register("users", "users-1", port=8080, tags=["gateway.enable=true"])
        client = consul.Consul(host=double.host, port=double.port)
        index, entries = client.health.service("users", passing=True)
        double.catalog.set_status("users-1", "critical")  # wakes blocked queries
        index, entries = client.health.service("users", index=index, wait="5s")

What it reproduces (see the project's Consul facts): PascalCase JSON in the modern shapes, never
``null`` lists, ``X-Consul-Index``/``-Knownleader``/``-Lastcontact`` on reads, blocking queries
with Consul's wait defaults, cap and jitter and per-service index semantics, ``?passing`` that
drops warning, critical and maintenance (node checks included) in unstable order,
case-insensitive AND ``?tag`` filters, ACL tokens from ``?token``, ``X-Consul-Token`` or
``Authorization: Bearer`` with Consul's 403 bodies and silent filtering of reads, maintenance as a
synthetic critical check, ``serfHealth`` on every node, and the agent write endpoints py-consul
calls with their 400/404 bodies.

Tests can also lower the index (:meth:`ConsulCatalog.reset_index`), take the server down and up on
the same port (:meth:`ConsulDouble.stop`/:meth:`ConsulDouble.start`), make reads fail or requests
hang (:meth:`ConsulDouble.set_fault`), and inspect every request a client sent
(:attr:`ConsulDouble.requests`).

Not modelled: KV, sessions, prepared queries, ``?filter`` expressions (refused with a 400 rather
than ignored), ``?near`` sorting (ignored), ``?cached`` and streaming, and any check execution
(statuses change only when a test or a client sets them).
"""

from __future__ import annotations

from .catalog import ConsulCatalog
from .model import STATUSES, Check, ConsulError, Instance, Node
from .server import ANONYMOUS_ACCESSOR, ConsulDouble
from .wire import ConsulRequest

__all__ = [
    "ANONYMOUS_ACCESSOR",
    "STATUSES",
    "Check",
    "ConsulCatalog",
    "ConsulDouble",
    "ConsulError",
    "ConsulRequest",
    "Instance",
    "Node",
]
