"""An ASGI ``http``/``websocket`` scope in the CGI names every stage reads (DESIGN §3).

The core's vocabulary is the WSGI environ: ``HTTP_*`` headers, ``QUERY_STRING``, ``REMOTE_ADDR``,
``RAW_URI``... The WSGI shell gets it from its server; this module builds the same dict from a
scope, the way Django's ``ASGIRequest`` builds ``META`` (repeated headers joined with commas,
cookies with ``; ``), so both shells answer one request the same way.

A header name with an underscore is dropped, as gunicorn drops it: ``X_Consumer_Id`` would
otherwise become ``HTTP_X_CONSUMER_ID``, indistinguishable from ``X-Consumer-Id``, and slip past
rules that compare names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: A WebSocket scope says ws/wss; the stages (X-Forwarded-Proto...) speak of http/https.
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}

#: Header name (bytes, lower case, as ASGI gives it) → environ key; bounded, names repeat.
_KEYS: dict[bytes, str | None] = {}
_KEYS_LIMIT = 4096


def _environ_key(name: bytes) -> str | None:
    key = _KEYS.get(name)
    if key is None and name not in _KEYS:
        text = name.decode("latin-1")
        if "_" in text:
            key = None
        elif text == "content-length":
            key = "CONTENT_LENGTH"
        elif text == "content-type":
            key = "CONTENT_TYPE"
        else:
            key = "HTTP_" + text.upper().replace("-", "_")
        if len(_KEYS) < _KEYS_LIMIT:
            _KEYS[name] = key
    return key


def add_headers(environ: dict[str, Any], headers: Iterable[tuple[bytes, bytes]]) -> None:
    for name, raw_value in headers:
        key = _environ_key(name)
        if key is None:
            continue
        value = raw_value.decode("latin-1")
        if key in environ:
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value


def environ_from_scope(scope: dict[str, Any]) -> dict[str, Any]:
    """The request in ``scope`` as a WSGI-style environ (no body: the shell streams it)."""
    root = scope.get("root_path", "")
    path: str = scope["path"]
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    raw_path = scope.get("raw_path")
    server = scope.get("server")
    client = scope.get("client")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.get("method", "GET"),
        "SCRIPT_NAME": root,
        # PEP 3333: PATH_INFO holds the path's UTF-8 bytes as latin-1 characters.
        "PATH_INFO": path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1"),
        "REMOTE_ADDR": client[0] if client else "",
        "SERVER_NAME": server[0] if server else "",
        "SERVER_PORT": str(server[1]) if server and server[1] is not None else "",
        "wsgi.url_scheme": _SCHEMES.get(scope.get("scheme") or "http", "http"),
    }
    if raw_path:  # still percent-encoded: %2F stays visible to the path rules
        environ["RAW_URI"] = raw_path.decode("latin-1")
    add_headers(environ, scope.get("headers", ()))
    return environ
