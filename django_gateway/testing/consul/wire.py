"""HTTP as Consul's Go server speaks it: request parsing, tokens, JSON and response framing.

Go details that clients can trip over are kept: header names canonicalised by Go
(``X-Consul-Knownleader``, ``X-Consul-Lastcontact``), compact JSON with ``<``, ``>`` and ``&``
escaped as ``\\u003c``-style sequences (``?pretty`` indents by four spaces and ends in a newline),
``Vary: Accept-Encoding`` on every answer with gzip for clients that accept it once a body
reaches 1400 bytes (the gziphandler default), chunked framing from 2048 bytes (Go's buffer before
chunking), and error bodies as ``text/plain; charset=utf-8`` with no trailing newline.
"""

from __future__ import annotations

import email.utils
import gzip
import http
import json
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import parse_qs, unquote

from ..rawservers import RecordedRequest

__all__ = ["ConsulRequest", "Reply", "encode_reply", "go_json", "parse_go_bool"]

_GZIP_MIN_SIZE = 1400
_CHUNK_FROM = 2048
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


@dataclass
class ConsulRequest(RecordedRequest):
    """A request as the double received it, for tests to assert on what a client sent.

    On top of :class:`~django_gateway.testing.rawservers.RecordedRequest` (method, raw target,
    headers, body): ``route`` is the percent-decoded path and ``params`` the query string as
    ``{name: [values...]}``, blank values kept (``?passing`` gives ``{"passing": [""]}``).
    """

    route: str = field(init=False)
    params: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.route = unquote(self.path)
        self.params = parse_qs(self.query, keep_blank_values=True)

    @classmethod
    def from_recorded(cls, raw: RecordedRequest) -> ConsulRequest:
        return cls(**{f.name: getattr(raw, f.name) for f in fields(raw) if f.init})

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name`` (``""`` if blank), or ``None``."""
        values = self.params.get(name)
        return values[0] if values else None

    @property
    def token(self) -> str:
        """The ACL token as Consul picks it: ``?token=``, then ``X-Consul-Token``, then
        ``Authorization: Bearer`` (scheme in any case); ``""`` when there is none."""
        if query_token := self.param("token"):
            return query_token
        if header_token := self.header("X-Consul-Token"):
            return header_token
        parts = (self.header("Authorization") or "").split(" ")
        if len(parts) > 1 and parts[0].lower() == "bearer":
            return " ".join(parts[1:]).strip().split(" ")[0].strip()
        return ""

    def json(self) -> Any:
        """The body decoded as JSON (``None`` when empty)."""
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """An answer before framing; ``text`` bodies get Go's sniffed ``Content-Type``."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    text: bool = False

    @classmethod
    def json(cls, obj: Any, headers: dict[str, str], *, pretty: bool = False) -> Reply:
        body = go_json(obj, pretty=pretty).encode()
        return cls(200, body, {"Content-Type": "application/json", **headers})

    @classmethod
    def error(cls, status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, message.encode(), dict(headers or {}), text=True)


def go_json(obj: Any, *, pretty: bool = False) -> str:
    """``json.Marshal`` (or ``MarshalIndent`` with four spaces plus a newline for ``pretty``)."""
    if pretty:
        text = json.dumps(obj, ensure_ascii=False, indent=4) + "\n"
    else:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for char, escape in _GO_ESCAPES.items():
        text = text.replace(char, escape)
    return text


def parse_go_bool(value: str) -> bool:
    """``strconv.ParseBool``; raises :class:`ValueError` for anything else."""
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ValueError(value)


def encode_reply(reply: Reply, *, accept_encoding: str, acl_policy: str) -> bytes:
    """The response bytes, headers ordered as Go writes them (sorted, then the ones it adds)."""
    body = reply.body
    headers = {"Vary": "Accept-Encoding", "X-Consul-Default-Acl-Policy": acl_policy}
    headers |= reply.headers
    if len(body) >= _GZIP_MIN_SIZE and "gzip" in accept_encoding.lower():
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    lines = [f"{name}: {value}" for name, value in sorted(headers.items())]
    lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
    chunked = len(body) >= _CHUNK_FROM
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}")
    if reply.text and reply.body:
        lines.append("Content-Type: text/plain; charset=utf-8")
    phrase = http.HTTPStatus(reply.status).phrase
    head = f"HTTP/1.1 {reply.status} {phrase}\r\n" + "".join(f"{line}\r\n" for line in lines)
    if chunked:
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    return head.encode("latin-1") + b"\r\n" + body
