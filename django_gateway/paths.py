"""Request paths: one canonical form for routing and forwarding, so a route can never be escaped.

Routing happens on the *decoded* path after removing dot segments and merging slashes; the upstream
receives exactly that canonical path re-encoded. ``/api/../admin`` therefore routes (and forwards) as
``/admin``, and ``/api//x``, ``/api/./x`` and ``/api/x`` are one path. Encodings that would let a
path mean something else to the upstream than to the router -- ``%2F``, ``%5C``, NUL, CR/LF -- are
refused with 400 rather than guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from .exceptions import BadRequest

_FORBIDDEN_ESCAPES = re.compile(r"%(2f|5c|00|0d|0a)", re.IGNORECASE)
_ENCODED_SLASH = re.compile(r"%(?:2f|5c)", re.IGNORECASE)
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
# RFC 3986 pchar minus percent-encoding, plus "/": what may stay literal in a forwarded path.
_SAFE = "/:@!$&'()*+,;=-._~"


def _merge_and_resolve(path: str) -> str:
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    canonical = "/" + "/".join(segments)
    if path.endswith(("/", "/.", "/..")) and segments:
        canonical += "/"
    return canonical


def canonical_path(raw_path: str, *, decoded: bool = False) -> str:
    """Return the canonical decoded path of a request, or raise :class:`BadRequest`.

    ``raw_path`` is the path as sent (percent-encoded) unless ``decoded`` says the server already
    decoded it (``PATH_INFO`` when the server gives no raw URI; then ``%2F`` cannot be told apart).
    """
    if not decoded:
        if _FORBIDDEN_ESCAPES.search(raw_path):
            raise BadRequest(
                "Encoded slashes, backslashes, NUL, CR and LF are not allowed in paths."
            )
        try:
            raw_path = unquote_to_bytes(raw_path).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest("The request path is not valid UTF-8.") from exc
    if _FORBIDDEN_CHARS.search(raw_path):
        raise BadRequest("Control characters and backslashes are not allowed in paths.")
    if not raw_path.startswith("/"):
        raise BadRequest("The request path must start with '/'.")
    if "//" not in raw_path and "/." not in raw_path:
        return raw_path
    return _merge_and_resolve(raw_path)


def refusal_probe_path(environ: Mapping[str, Any]) -> str:
    """A routable stand-in for a path :func:`canonical_path` refused, to decide whose it is.

    A refused path that would match a route gets the gateway's 400; any other is left to Django.
    Encoded slashes stay opaque: ``%2F`` separates segments here, but a ``.`` or ``..`` next to one
    is kept as a literal segment, never resolved, so ``/api/..%2Fadmin``, ``/api/%2F..%2Fadmin`` and
    ``/api%2F..%2Fadmin`` all stay under ``/api`` (and get 400 when a route covers ``/api``).
    Forbidden characters become ``_`` so they neither match nor break matching.
    """
    try:
        raw, decoded = raw_request_path(environ)
    except BadRequest:  # PATH_INFO that is not UTF-8
        raw, decoded = (
            environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace"),
            True,
        )
    if decoded:  # the server decoded %2F already: nothing is left to keep opaque
        pieces = [raw]
    else:
        pieces = [
            unquote_to_bytes(piece).decode("utf-8", "replace")
            for piece in _ENCODED_SLASH.split(raw)
        ]
    for i in range(len(pieces) - 1):  # the segments on either side of an encoded slash
        head, sep, last = pieces[i].rpartition("/")
        if last in (".", ".."):
            pieces[i] = f"{head}{sep}\x00{last}"
        first, sep, tail = pieces[i + 1].partition("/")
        if first in (".", ".."):
            pieces[i + 1] = f"\x00{first}{sep}{tail}"
    return _merge_and_resolve(_FORBIDDEN_CHARS.sub("_", "/".join(pieces)) or "/")


def canonical_prefix(prefix: str) -> str:
    """A route prefix in the same canonical form, without a trailing slash (segments match anyway)."""
    canonical = _merge_and_resolve(prefix)
    return canonical.rstrip("/") or "/"


_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9/:@!$&'()*+,;=\-._~]")


def encode_path(path: str) -> str:
    """Percent-encode a canonical decoded path for the request line sent upstream."""
    if _NEEDS_QUOTING.search(path) is None:  # the common case: nothing to encode
        return path
    return quote(path, safe=_SAFE)


def raw_request_path(environ: Mapping[str, Any]) -> tuple[str, bool]:
    """The request path as sent, and whether it is still encoded.

    gunicorn gives ``RAW_URI`` and uWSGI ``REQUEST_URI``; both keep ``%2F`` visible. Without them only
    the already-decoded ``PATH_INFO`` (a latin-1 string of UTF-8 bytes, per PEP 3333) is available.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if raw.startswith(("http://", "https://")):
            scheme_end = raw.index("//") + 2
            slash = raw.find("/", scheme_end)
            raw = raw[slash:] if slash != -1 else "/"
        raw = raw.partition("?")[0]
        script_name = environ.get("SCRIPT_NAME", "")
        if script_name and raw.startswith(script_name):
            raw = raw[len(script_name) :] or "/"
        return raw, False
    path_info = environ.get("PATH_INFO", "/")
    try:
        return path_info.encode("latin-1").decode("utf-8"), True
    except UnicodeError as exc:
        raise BadRequest("The request path is not valid UTF-8.") from exc
