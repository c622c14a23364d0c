"""WebSocket passthrough end to end: a real uvicorn (its ``websockets`` implementation) serving
the gateway in a thread, a real ``websockets`` upstream on loopback, a real ``websockets`` client.

The server runs in this process, so the configuration is committed rows (``transactional_db``)
and ``settings`` changes reach it as they reach the tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from django.core.handlers.asgi import ASGIHandler
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response
from websockets.sync.client import ClientConnection, connect

from django_gateway import operations
from django_gateway.asgi.middleware import GatewayASGIMiddleware
from django_gateway.models import Consumer, RateLimit, Route
from django_gateway.runtime import runtime
from django_gateway.testing.upstreams import unused_port
from tests.conftest import make_route, make_service
from tests.proxy.test_aio_transport import certificate  # noqa: F401 (a fixture)

HOST = "127.0.0.1"
WAIT = 5.0

pytestmark = pytest.mark.usefixtures("transactional_db")


# -- the upstream ------------------------------------------------------------------------------


class WebSocketUpstream:
    """A ``websockets`` server in a thread of its own. It echoes every message, records every
    handshake request and how each connection ended, and obeys a few text commands:
    ``close CODE REASON``, ``drop`` (abort the TCP connection), ``big N`` (send N bytes).
    ``…/deny`` is refused with 403; ``chat.v2`` is the one subprotocol it speaks."""

    def __init__(self, tls_files: tuple[str, str] | None = None) -> None:
        self.tls: ssl.SSLContext | None = None
        if tls_files is not None:  # certificate and key
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(*tls_files)
        self.requests: queue.Queue[Request] = queue.Queue()
        self.closes: queue.Queue[tuple[int | None, str | None]] = queue.Queue()
        self.host = HOST
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None

    def __enter__(self) -> WebSocketUpstream:
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self._server = self._run(self._serve())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        server = self._server
        if server is not None:
            server.close()
            self._run(server.wait_closed())
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(WAIT)

    async def _serve(self) -> Server:
        return await serve(
            self._handle,
            HOST,
            0,
            ssl=self.tls,
            process_request=self._process_request,
            select_subprotocol=lambda _, offered: "chat.v2" if "chat.v2" in offered else None,
        )

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.requests.put(request)
        if request.path.endswith("/deny"):
            return conn.respond(403, "go away\n")
        return None

    async def _handle(self, conn: ServerConnection) -> None:
        try:
            async for message in conn:
                if isinstance(message, str) and message.startswith("close "):
                    _, code, reason = message.split(" ", 2)
                    await conn.close(int(code), reason)
                elif message == "drop":
                    conn.transport.abort()
                elif isinstance(message, str) and message.startswith("big "):
                    await conn.send(b"x" * int(message[4:]))
                else:
                    await conn.send(message)
        finally:
            await conn.wait_closed()
            self.closes.put((conn.close_code, conn.close_reason))

    def handshake(self) -> Headers:
        return self.requests.get(timeout=WAIT).headers

    def closed(self) -> tuple[int | None, str | None]:
        return self.closes.get(timeout=WAIT)


@pytest.fixture
def upstream() -> Iterator[WebSocketUpstream]:
    with WebSocketUpstream() as server:
        yield server


# -- the gateway under uvicorn -----------------------------------------------------------------


@pytest.fixture(scope="module", params=["websockets", "websockets-sansio"])
def gateway(request: pytest.FixtureRequest) -> Iterator[str]:
    """The gateway's ASGI app under uvicorn, with each of its implementations on ``websockets``
    (the first is deprecated, the second its successor); the server's ``ws://`` URL."""
    port = unused_port(HOST)
    config = uvicorn.Config(
        GatewayASGIMiddleware(ASGIHandler()),
        host=HOST,
        port=port,
        ws=request.param,
        lifespan="off",
        proxy_headers=False,  # the gateway decides whom to believe (TRUSTED_PROXIES)
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"ws://{HOST}:{port}"
    server.should_exit = True
    thread.join(10)


def ws_route(upstream: Any, service: dict[str, Any] | None = None, **fields: Any) -> Route:
    fields.setdefault("websocket", True)
    return make_route(make_service(upstream, **(service or {})), **fields)


def open_ws(url: str, **options: Any) -> ClientConnection:
    return connect(url, open_timeout=WAIT, close_timeout=WAIT, **options)


def refused(url: str, **options: Any) -> Response:
    """The HTTP response that refused the handshake."""
    with pytest.raises(InvalidStatus) as caught:
        open_ws(url, **options)
    return caught.value.response


def problem(response: Response) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response.body)
    assert body["status"] == response.status_code
    return body


def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """The close frame the gateway sent the client."""
    with pytest.raises(ConnectionClosed) as caught:
        while True:
            ws.recv(timeout=WAIT)
    rcvd = caught.value.rcvd
    assert rcvd is not None, caught.value
    return rcvd.code, rcvd.reason


# -- relaying ----------------------------------------------------------------------------------


def test_text_and_binary_messages_are_relayed_both_ways(gateway, upstream):
    ws_route(upstream)
    with open_ws(f"{gateway}/api/chat") as ws:
        ws.send("h\u00e9llo")
        assert ws.recv(timeout=WAIT) == "h\u00e9llo"
        ws.send(b"\x00\xff" * 1000)
        assert ws.recv(timeout=WAIT) == b"\x00\xff" * 1000
    assert upstream.handshake()["Host"] == f"{HOST}:{upstream.port}"
    assert upstream.requests.empty()


def test_the_upstream_chooses_among_the_clients_subprotocols(gateway, upstream):
    ws_route(upstream)
    with open_ws(f"{gateway}/api/chat", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
    assert upstream.handshake()["Sec-WebSocket-Protocol"] == "chat.v1, chat.v2"


def test_the_upstream_sees_the_gateways_headers_never_the_clients_claims(gateway, upstream):
    route = ws_route(upstream, authentication="key", strip_path=True)
    consumer = Consumer.objects.create(username="alice", custom_id="c-42")
    _, key = operations.issue_key(consumer)
    runtime.snapshots.invalidate()
    with open_ws(
        f"{gateway}/api/chat?room=1",
        additional_headers={
            "X-API-Key": key,
            "X-Consumer-Username": "mallory",
            "X-Forwarded-For": "198.51.100.7",
            "Origin": "https://app.example",
        },
    ) as ws:
        request_id = ws.response.headers["X-Request-ID"]
    request = upstream.requests.get(timeout=WAIT)
    headers = request.headers
    assert request.path == "/chat?room=1"  # the route strips /api
    assert headers["X-Consumer-Username"] == "alice"
    assert headers.get_all("X-Consumer-Username") == ["alice"]
    assert headers["X-Consumer-Custom-ID"] == "c-42"
    assert "X-API-Key" not in headers  # hide_credentials
    assert headers["X-Forwarded-For"] == f"198.51.100.7, {HOST}"
    assert headers["X-Request-ID"] == request_id
    assert headers["Origin"] == "https://app.example"
    assert route.hide_credentials


@pytest.mark.parametrize("verify", [False, True])
def test_an_https_service_is_reached_over_wss(gateway, certificate, verify):  # noqa: F811
    with WebSocketUpstream(certificate) as upstream:
        service = make_service(name="tls", protocol="https", tls_verify=verify)
        service.targets.create(host="localhost", port=upstream.port)
        make_route(service, websocket=True)
        if not verify:
            with open_ws(f"{gateway}/api/chat") as ws:
                ws.send("over tls")
                assert ws.recv(timeout=WAIT) == "over tls"
            assert upstream.handshake()["Host"] == f"localhost:{upstream.port}"
        else:  # a self-signed certificate nobody trusts
            response = refused(f"{gateway}/api/chat")
            assert response.status_code == 502
            assert "TLS" in problem(response)["detail"]


# -- refused handshakes ------------------------------------------------------------------------


def test_a_handshake_without_credentials_gets_the_401_problem(gateway, upstream, caplog):
    ws_route(upstream, authentication="key")
    with caplog.at_level(logging.INFO, logger="django_gateway.access"):
        response = refused(f"{gateway}/api/chat")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"]
    assert problem(response)["request_id"] == response.headers["X-Request-ID"]
    assert [r.status for r in caplog.records if r.name == "django_gateway.access"] == [401]
    assert upstream.requests.empty()


def test_a_handshake_over_a_rate_limit_gets_429(gateway, upstream):
    route = ws_route(upstream)
    RateLimit.objects.create(route=route, limit=1, period="minute", limit_by="ip")
    runtime.snapshots.invalidate()
    with open_ws(f"{gateway}/api/chat") as ws:
        assert ws.response.headers["RateLimit-Remaining"] == "0"
    response = refused(f"{gateway}/api/chat")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["RateLimit-Limit"] == "1"
    problem(response)


def test_a_route_without_the_websocket_switch_refuses_the_upgrade(gateway, upstream):
    ws_route(upstream, websocket=False)
    response = refused(f"{gateway}/api/chat")
    assert response.status_code == 400
    assert "WebSocket" in problem(response)["detail"]
    assert upstream.requests.empty()


def test_a_refused_path_is_answered_before_any_route_stage(gateway, upstream):
    ws_route(upstream)
    response = refused(f"{gateway}/api/a%2Fb")
    assert response.status_code == 400
    problem(response)


def test_an_upstream_that_is_down_gives_502(gateway):
    service = make_service(name="down")
    service.targets.create(host=HOST, port=unused_port(HOST))  # nothing listens there
    make_route(service, websocket=True)
    response = refused(f"{gateway}/api/chat")
    assert response.status_code == 502
    problem(response)


def test_the_upstream_address_policy_holds_for_websockets(gateway):
    service = make_service(name="metadata")
    service.targets.create(host="169.254.169.254", port=80)  # not validated: as if resolved
    make_route(service, websocket=True)
    response = refused(f"{gateway}/api/chat")
    assert response.status_code == 502
    assert "link-local" in problem(response)["detail"]


def test_an_upstream_that_refuses_the_upgrade_gives_502(gateway, upstream):
    ws_route(upstream)
    response = refused(f"{gateway}/api/deny")
    assert response.status_code == 502
    assert "403" in problem(response)["detail"]


def test_an_open_websocket_holds_its_place_under_max_concurrent_requests(gateway, upstream):
    ws_route(upstream, service={"max_concurrent_requests": 1})
    with open_ws(f"{gateway}/api/chat") as ws:
        ws.send("still here")
        assert ws.recv(timeout=WAIT) == "still here"
        response = refused(f"{gateway}/api/chat")
        assert response.status_code == 503
        assert response.headers["Retry-After"]
    upstream.closed()
    deadline = time.monotonic() + WAIT
    while True:  # the gateway lets go of its place once both sides have closed
        try:
            with open_ws(f"{gateway}/api/chat"):
                break
        except InvalidStatus:
            assert time.monotonic() < deadline


# -- how connections end -----------------------------------------------------------------------


def test_the_clients_close_code_reaches_the_upstream(gateway, upstream, caplog):
    ws_route(upstream)
    with caplog.at_level(logging.INFO, logger="django_gateway.access"):
        with open_ws(f"{gateway}/api/chat") as ws:
            ws.send("hi")
            ws.recv(timeout=WAIT)
            ws.close(4001, "done here")
        assert upstream.closed() == (4001, "done here")
        deadline = time.monotonic() + WAIT
        while not [r for r in caplog.records if r.name == "django_gateway.access"]:
            assert time.monotonic() < deadline, "no access log line"
            time.sleep(0.02)
    (record,) = [r for r in caplog.records if r.name == "django_gateway.access"]
    assert record.status == 101


def test_the_upstreams_close_code_reaches_the_client(gateway, upstream):
    ws_route(upstream)
    with open_ws(f"{gateway}/api/chat") as ws:
        ws.send("close 1011 upstream broke")
        assert closed_with(ws) == (1011, "upstream broke")


def test_a_lost_upstream_connection_closes_the_client_with_1014(gateway, upstream):
    ws_route(upstream)
    with open_ws(f"{gateway}/api/chat") as ws:
        ws.send("drop")
        assert closed_with(ws)[0] == 1014


def test_a_lost_client_connection_closes_the_upstream(gateway, upstream):
    ws_route(upstream)
    ws = open_ws(f"{gateway}/api/chat")
    ws.send("hi")
    ws.recv(timeout=WAIT)
    ws.socket.close()  # no close frame: the TCP connection just ends
    ws.close()
    # 1001 where the server says the connection was lost (1006); uvicorn's sans-I/O
    # implementation says 1005 (closed without a code) instead, which the upstream gets as 1000.
    assert upstream.closed()[0] in (1000, 1001)


def test_an_idle_connection_is_closed_on_both_sides(gateway, upstream, settings):
    settings.GATEWAY = {**settings.GATEWAY, "WEBSOCKET_IDLE_TIMEOUT": 0.3}
    ws_route(upstream)
    with open_ws(f"{gateway}/api/chat") as ws:
        for _ in range(3):  # messages keep it open past the timeout
            time.sleep(0.15)
            ws.send("ping")
            assert ws.recv(timeout=WAIT) == "ping"
        assert closed_with(ws) == (1001, "idle timeout")
    assert upstream.closed() == (1001, "idle timeout")


@pytest.mark.parametrize("where", ["route", "setting"])
def test_a_connection_ends_at_its_maximum_lifetime(gateway, upstream, settings, where):
    if where == "route":
        ws_route(upstream, max_response_duration=0.3)
    else:
        settings.GATEWAY = {**settings.GATEWAY, "WEBSOCKET_MAX_LIFETIME": 0.3}
        ws_route(upstream)
    with open_ws(f"{gateway}/api/chat") as ws:
        started = time.monotonic()
        assert closed_with(ws) == (1001, "maximum lifetime reached")
        assert time.monotonic() - started < 2
    assert upstream.closed() == (1001, "maximum lifetime reached")


@pytest.mark.parametrize("sender", ["client", "upstream"])
def test_a_message_over_the_size_limit_closes_both_sides_with_1009(
    gateway, upstream, settings, sender
):
    settings.GATEWAY = {**settings.GATEWAY, "WEBSOCKET_MAX_MESSAGE_SIZE": 1000}
    ws_route(upstream)
    with open_ws(f"{gateway}/api/chat") as ws:
        ws.send(b"x" * 1000)
        assert ws.recv(timeout=WAIT) == b"x" * 1000  # the limit itself passes
        ws.send(b"x" * 1001 if sender == "client" else "big 1001")
        assert closed_with(ws)[0] == 1009
    assert upstream.closed()[0] == 1009


# -- servers without the HTTP response extension -----------------------------------------------


def test_without_the_extension_a_refusal_closes_the_handshake_with_1008(caplog):
    service = make_service(name="plain")
    make_route(service, websocket=False)
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/api/chat",
        "raw_path": b"/api/chat",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gw.test")],
        "client": ("203.0.113.9", 50123),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def not_the_gateways(*args: Any) -> None:
        raise AssertionError("the gateway should have answered")

    with caplog.at_level(logging.INFO, logger="django_gateway.access"):
        asyncio.run(GatewayASGIMiddleware(not_the_gateways)(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "400 Bad Request"}]
    assert [r.status for r in caplog.records if r.name == "django_gateway.access"] == [400]
