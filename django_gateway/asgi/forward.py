"""Forwarding on the event loop: the WSGI forwarder's :class:`~..proxy.forwarder.Tries` (retry
policy, service cap, instance bookkeeping) around the async transport.

Only the I/O differs from :func:`django_gateway.proxy.forwarder.forward`: the request body comes
from ASGI ``receive``, the send is awaited, and choosing an instance moves off the loop in the one
case it may wait (a Consul service's first answer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..exceptions import GatewayError
from ..exchange import Exchange
from ..offloop import WouldBlock
from ..proxy.aio_body import async_request_body
from ..proxy.aio_transport import AsyncUpstreamResponse
from ..proxy.failures import NoResponse
from ..proxy.forwarder import Tries
from ..proxy.plan import UpstreamPlan, body_limit, plan_request
from ..runtime import runtime
from ..selection import Choice
from .offload import offload

Receive = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class Forwarded:
    """A try that got a response head: what the shell needs to answer, and whom to tell when
    the response is finished (``tries.finished(choice)``)."""

    plan: UpstreamPlan
    choice: Choice
    upstream: AsyncUpstreamResponse
    tries: Tries


async def aforward(exchange: Exchange, receive: Receive, watch: Any) -> Forwarded:
    """``watch`` (the shell's ClientWatch) learns of the body, so that it reads ``receive()``
    only once the body has been read."""
    plan = plan_request(exchange, body=False)
    plan.body = watch.body = async_request_body(
        exchange.environ, receive, body_limit(exchange.route)
    )
    tries = Tries(exchange, plan)
    choice: Choice | None = None
    try:
        while True:
            choice = await next_choice(tries)
            try:
                upstream = await _send(choice, tries)
            except GatewayError as error:
                tries.failed(choice, error)
                continue
            choice.succeeded()
            return Forwarded(plan, choice, upstream, tries)
    except BaseException:
        tries.finished(choice)
        raise


async def next_choice(tries: Tries) -> Choice:
    """The next try's instance; off the loop in the one case choosing may wait (a Consul
    service's first answer)."""
    try:
        return tries.next()
    except WouldBlock:
        return await offload(tries.next)


async def _send(choice: Choice, tries: Tries) -> AsyncUpstreamResponse:
    transport, request = runtime.async_transport, tries.request(choice)
    timeouts = tries.plan.timeouts
    try:
        return await transport.send(choice.endpoint, request, timeouts, replayable=tries.replayable)
    except NoResponse as error:
        if not tries.resend_fresh(error):
            raise
        return await transport.send(choice.endpoint, request, timeouts)
