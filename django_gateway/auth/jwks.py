"""Verification keys for JWT credentials: PEM public keys, and JWKS documents cached per process.

A JWKS document is fetched on the request path, so the cache bounds what that costs: a document is
kept for ``JWKS_CACHE_SECONDS``; a token naming an unknown ``kid`` (the issuer rotated its keys)
triggers a refresh, but no URL is fetched more than once per ``JWKS_MIN_REFRESH_INTERVAL`` (a flood
of forged ``kid`` values costs one fetch per interval, then plain 401s). One thread fetches a
given URL at a time; threads holding a usable key never wait for it. A failed fetch keeps the last
good set. The cache is per process (DESIGN §5): each gunicorn worker fetches for itself.

Keys are chosen by the credential, never by the token: a key qualifies when its ``use`` is absent
or ``sig``, its own ``alg`` (if any) equals the credential's algorithm, and its type fits that
algorithm (RSA ≥ 2048 bits for RS*/PS*, EC P-256/P-384 for ES256/ES384, Ed25519 for EdDSA).
Symmetric (``oct``) keys in a document are never used.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK, PyJWTError

from ..conf import gateway_settings
from ..netpolicy import allowed_addresses, forbidden_upstream_reason
from ..offloop import must_not_block

logger = logging.getLogger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

#: Smallest HMAC secret per algorithm, in bytes: the hash size (RFC 7518 §3.2).
HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
_CURVES = {"ES256": ("secp256r1", "P-256"), "ES384": ("secp384r1", "P-384")}
MIN_RSA_BITS = 2048
MAX_DOCUMENT_BYTES = 1024 * 1024
_PRIVATE_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
MAX_KEYS = 50  # per document: a token without kid is tried against each matching key


def key_problem(key: object, algorithm: str) -> str | None:
    """Why ``key`` cannot verify ``algorithm`` signatures, or ``None`` when it can."""
    if algorithm.startswith(("RS", "PS")):
        if not isinstance(key, rsa.RSAPublicKey):
            return f"{algorithm} needs an RSA public key"
        if key.key_size < MIN_RSA_BITS:
            return f"the RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required"
    elif algorithm in _CURVES:
        curve, label = _CURVES[algorithm]
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
            return f"{algorithm} needs an EC public key on curve {label}"
    elif algorithm == "EdDSA":
        if not isinstance(key, ed25519.Ed25519PublicKey):
            return "EdDSA needs an Ed25519 public key"
    else:
        return f"{algorithm} is not an asymmetric algorithm"
    return None


def load_public_key(pem: str, algorithm: str) -> PublicKey:
    """A public key (or a certificate's) from PEM text, checked against ``algorithm``.

    Raises ``ValueError`` with a message fit for the admin; it never quotes the PEM.
    """
    data = pem.strip().encode()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except Exception:  # cryptography raises ValueError, TypeError or UnsupportedAlgorithm
        raise ValueError(
            "This is not a PEM public key or certificate (-----BEGIN PUBLIC KEY-----)."
        ) from None
    problem = key_problem(key, algorithm)
    if problem:
        raise ValueError(f"The key does not fit: {problem}.")
    assert isinstance(key, PublicKey)  # key_problem accepted it, so it is one of these types
    return key


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a JWKS URL we may fetch, else ``ValueError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("A JWKS URL must be an http:// or https:// URL with a host.")
    reason = forbidden_upstream_reason(parts.hostname)
    if reason:
        raise ValueError(f"The JWKS URL is refused: {reason}.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("The JWKS URL has an invalid port.") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def _safe_url(url: str) -> str:
    """The URL for log messages: without user info, which may hold a password."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _checked_socket(host: str, port: int, timeout: float | None) -> socket.socket:
    """A socket connected to one of the addresses the upstream policy allows for ``host``
    (netpolicy.allowed_addresses): the very addresses checked, so DNS cannot be rebound between
    the check and the connection."""
    error: OSError = OSError(f"{host} did not resolve")
    for family, kind, proto, _, sockaddr in allowed_addresses(host, port):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


class _CheckedHTTPConnection(HTTPConnection):
    """http.client over :func:`_checked_socket`. ``connect()`` is the documented method a
    subclass overrides to decide how the connection is opened; requests, the ``Host`` header
    and response parsing stay http.client's."""

    def connect(self) -> None:
        self.sock = _checked_socket(self.host, self.port, self.timeout)


class _CheckedHTTPSConnection(HTTPSConnection):
    """The same over TLS. The socket goes to the checked IP address, while SNI and the
    certificate check use the URL's host name, as a plain ``HTTPSConnection`` would."""

    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        # What HTTPSConnection makes when given no context: system CAs, host name checked.
        self.tls = ssl.create_default_context()
        self.tls.set_alpn_protocols(["http/1.1"])
        super().__init__(host, port, timeout=timeout, context=self.tls)

    def connect(self) -> None:
        sock = _checked_socket(self.host, self.port, self.timeout)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def fetch_document(url: str, timeout: float) -> bytes:
    """GET ``url`` (no redirects, no proxies), at most ``MAX_DOCUMENT_BYTES`` within ``timeout``."""
    scheme, host, port, path = check_url(url)
    connection_class = _CheckedHTTPSConnection if scheme == "https" else _CheckedHTTPConnection
    connection = connection_class(host, port, timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        connection.request(
            "GET", path, headers={"Accept": "application/jwk-set+json, application/json"}
        )
        response = connection.getresponse()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        body = bytearray()
        while chunk := response.read1(64 * 1024):
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise OSError(f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
            if time.monotonic() > deadline:
                raise OSError("the fetch took longer than JWKS_TIMEOUT")
        return bytes(body)
    finally:
        connection.close()


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    algorithms: frozenset[str]  # the credential algorithms this key may verify
    key: PublicKey


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: tuple[_Key, ...]

    def matching(self, algorithm: str, kid: str | None) -> tuple[PublicKey, ...]:
        """Keys for ``algorithm``: the one(s) named ``kid``, or all of them when there is no kid."""
        return tuple(
            k.key for k in self.keys if algorithm in k.algorithms and (kid is None or k.kid == kid)
        )


def parse_document(document: bytes) -> KeySet:
    """The usable signature keys of a JWKS document; unusable keys are skipped, not fatal."""
    try:
        entries = json.loads(document)["keys"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise ValueError("not a JWKS document (a JSON object with a 'keys' list)") from None
    if not isinstance(entries, list):
        raise ValueError("'keys' is not a list")
    keys = []
    for jwk in entries:
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC", "OKP"):
            continue  # never "oct": a symmetric key published in a JWKS would be anyone's
        if jwk.get("use", "sig") != "sig" or "verify" not in jwk.get("key_ops", ["verify"]):
            continue
        kid, alg = jwk.get("kid"), jwk.get("alg")
        if (kid is not None and not isinstance(kid, str)) or (alg and alg not in ASYMMETRIC):
            continue
        try:
            key = PyJWK(jwk).key
        except (PyJWTError, ValueError, TypeError):
            continue
        if isinstance(key, _PRIVATE_KEYS):  # a private key published by mistake: use its half
            key = key.public_key()
        fits = frozenset(a for a in ASYMMETRIC if alg in (None, a) and key_problem(key, a) is None)
        if fits:
            keys.append(_Key(kid, fits, key))
    return KeySet(tuple(keys[:MAX_KEYS]))


class _Entry:
    """One URL: its key set and when it was fetched (swapped together), guarded by ``lock``."""

    __slots__ = ("attempted_at", "current", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: tuple[KeySet | None, float] = (None, 0.0)
        self.attempted_at: float | None = None


class JWKSCache:
    """Per-process JWKS documents by URL. The clock is an attribute so tests can move it."""

    clock = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def keys(self, url: str, algorithm: str, kid: str | None) -> tuple[PublicKey, ...]:
        """Keys that may verify a token for ``algorithm`` naming ``kid``; empty: refuse it."""
        entry = self._entries.get(url) or self._entry(url)
        keyset, fetched_at = entry.current
        found = keyset.matching(algorithm, kid) if keyset else ()
        now = self.clock()
        if found and now - fetched_at < gateway_settings.JWKS_CACHE_SECONDS:
            return found
        # A request holding a usable (stale) key never waits for a fetch; one with no key waits
        # for a fetch under way (it may bring the key), else starts one if the interval allows.
        waiting = not found and entry.lock.locked()
        if not waiting and not self._may_fetch(entry, now):
            return found  # stale keys, or none: either way no fetch before the interval ends
        must_not_block("a JWKS fetch")
        if found:
            acquired = entry.lock.acquire(blocking=False)
        else:
            acquired = entry.lock.acquire(timeout=gateway_settings.JWKS_TIMEOUT + 1)
        if not acquired:
            return found
        try:
            now = self.clock()
            if self._may_fetch(entry, now):
                entry.attempted_at = now
                self._refresh(url, entry, now)
            keyset = entry.current[0]
        finally:
            entry.lock.release()
        return keyset.matching(algorithm, kid) if keyset else ()

    @staticmethod
    def _may_fetch(entry: _Entry, now: float) -> bool:
        last = entry.attempted_at
        return last is None or now - last >= gateway_settings.JWKS_MIN_REFRESH_INTERVAL

    def _entry(self, url: str) -> _Entry:
        with self._lock:
            return self._entries.setdefault(url, _Entry())

    def _refresh(self, url: str, entry: _Entry, now: float) -> None:
        try:
            keyset = parse_document(fetch_document(url, gateway_settings.JWKS_TIMEOUT))
        except (OSError, ValueError, HTTPException) as exc:  # socket, TLS, HTTP, parse errors
            logger.warning(
                "JWKS fetch from %s failed (%s); keeping the previous key set",
                _safe_url(url),
                exc,
            )
            return
        entry.current = (keyset, now)
        logger.info("Fetched JWKS from %s: %d usable keys", _safe_url(url), len(keyset.keys))

    def reset(self) -> None:
        """Forget every document (tests; ``reset_gateway_state``)."""
        with self._lock:
            self._entries.clear()


cache = JWKSCache()
