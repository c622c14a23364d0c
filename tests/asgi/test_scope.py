"""The ASGI scope in the environ vocabulary every stage reads (the WSGI server's names)."""

from __future__ import annotations

from django_gateway.asgi.scope import environ_from_scope


def scope(**fields):
    base = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/x",
        "raw_path": b"/api/x",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gw.test")],
        "client": ("203.0.113.9", 50123),
        "server": ("127.0.0.1", 8000),
    }
    base.update(fields)
    return base


def test_the_request_line_and_peer_in_cgi_names():
    environ = environ_from_scope(
        scope(
            method="POST", path="/api/caf\u00e9", raw_path=b"/api/caf%C3%A9", query_string=b"a=%2F"
        )
    )
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/api/caf\u00c3\u00a9"  # PEP 3333: UTF-8 bytes as latin-1
    assert environ["RAW_URI"] == "/api/caf%C3%A9"  # still encoded: %2F stays visible
    assert environ["QUERY_STRING"] == "a=%2F"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["REMOTE_ADDR"] == "203.0.113.9"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", "8000")
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["HTTP_HOST"] == "gw.test"


def test_repeated_headers_join_as_django_joins_them():
    environ = environ_from_scope(
        scope(
            headers=[
                (b"host", b"gw.test"),
                (b"x-forwarded-for", b"10.0.0.1"),
                (b"x-forwarded-for", b"10.0.0.2"),
                (b"cookie", b"a=1"),
                (b"cookie", b"b=2"),
                (b"content-type", b"text/plain"),
                (b"content-length", b"5"),
            ]
        )
    )
    assert environ["HTTP_X_FORWARDED_FOR"] == "10.0.0.1,10.0.0.2"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in environ


def test_a_header_name_with_an_underscore_is_dropped_as_gunicorn_drops_it():
    environ = environ_from_scope(
        scope(headers=[(b"host", b"gw.test"), (b"x_consumer_id", b"admin")])
    )
    assert "HTTP_X_CONSUMER_ID" not in environ


def test_root_path_is_script_name_and_websocket_schemes_read_as_http():
    environ = environ_from_scope(
        scope(type="websocket", scheme="wss", root_path="/gw", path="/gw/api/x")
    )
    assert environ["SCRIPT_NAME"] == "/gw"
    assert environ["PATH_INFO"] == "/api/x"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["REQUEST_METHOD"] == "GET"  # a WebSocket scope has no method


def test_no_host_header_and_no_client():
    environ = environ_from_scope(scope(headers=[], client=None, http_version="1.0"))
    assert "HTTP_HOST" not in environ
    assert environ["REMOTE_ADDR"] == ""
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
