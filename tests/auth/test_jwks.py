"""JWKS: keys fetched from a real loopback issuer, cached, rotated, rate-limited, kept on failure."""

from __future__ import annotations

import datetime
import json
import logging
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from jwt.algorithms import get_default_algorithms

from django_gateway.auth import jwks
from django_gateway.runtime import runtime
from django_gateway.testing.upstreams import EchoUpstream, Reply, json_reply, redirect_to
from tests.auth import test_jwt as base
from tests.auth.test_jwt import accepted, add_credential, call, refused, sign

# The JWT tests' fixtures, shared here: settings with no brute-force limit, keys, the /api route.
gateway, keys, route = base.gateway, base.keys, base.route

pytestmark = pytest.mark.django_db

JWKS_PATH = "/.well-known/jwks.json"


def jwk(private_key, kid: str | None, algorithm: str = "RS256", **extra) -> dict:
    data = get_default_algorithms()[algorithm].to_jwk(private_key.public_key(), as_dict=True)
    return {**data, **({"kid": kid} if kid else {}), **extra}


@pytest.fixture
def issuer():
    """An identity provider's JWKS endpoint; tests change ``issuer.doc["keys"]`` to rotate."""
    doc: dict = {"keys": []}
    with EchoUpstream(responder=lambda request: json_reply(doc)) as server:
        server.doc = doc
        yield server


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    """The JWKS cache's clock, moved by hand; the cache starts and ends empty."""
    now = [1000.0]
    runtime.jwks.reset()
    monkeypatch.setattr(runtime.jwks, "clock", lambda: now[0])
    yield now
    runtime.jwks.reset()


@pytest.fixture
def new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks_credential(issuer, algorithm="RS256"):
    return add_credential(algorithm, jwks_url=f"{issuer.url}{JWKS_PATH}")


def through(client, echo, token):
    """Call the route and say whether the upstream got the request."""
    echo.clear()
    response = call(client, token)
    if response.status_code == 200:
        accepted(response, echo)
        return True
    refused(response, echo, token)
    return False


@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "ES256", "ES384", "EdDSA"])
def test_verified_with_a_fetched_key_that_is_then_cached(
    client, echo, route, keys, issuer, algorithm
):
    issuer.doc["keys"] = [jwk(keys[algorithm], "a", algorithm, use="sig")]
    jwks_credential(issuer, algorithm)
    for _ in range(3):
        assert through(client, echo, sign(keys[algorithm], algorithm, headers={"kid": "a"}))
    (fetch,) = issuer.requests
    assert fetch.target == JWKS_PATH


def test_rotation(client, echo, route, keys, issuer, clock, new_key):
    old, new = keys["RS256"], new_key
    issuer.doc["keys"] = [jwk(old, "old")]
    jwks_credential(issuer)
    assert through(client, echo, sign(old, "RS256", headers={"kid": "old"}))
    issuer.doc["keys"] = [jwk(old, "old"), jwk(new, "new")]  # the issuer publishes its next key
    clock[0] += 1
    assert not through(client, echo, sign(new, "RS256", headers={"kid": "new"}))
    assert issuer.request_count == 1  # just fetched: an unknown kid waits for the interval
    clock[0] += 30
    assert through(client, echo, sign(new, "RS256", headers={"kid": "new"}))  # refreshed
    assert issuer.request_count == 2
    issuer.doc["keys"] = [jwk(new, "new")]  # ... and retires the old one
    clock[0] += 100
    assert through(client, echo, sign(old, "RS256", headers={"kid": "old"}))  # still cached
    clock[0] += 300  # JWKS_CACHE_SECONDS after the last fetch
    assert not through(client, echo, sign(old, "RS256", headers={"kid": "old"}))
    assert issuer.request_count == 3
    assert through(client, echo, sign(new, "RS256", headers={"kid": "new"}))
    assert issuer.request_count == 3


def test_cache_lifetime_follows_the_setting(client, echo, route, keys, issuer, clock, gateway):
    gateway.GATEWAY = {**gateway.GATEWAY, "JWKS_CACHE_SECONDS": 5, "JWKS_MIN_REFRESH_INTERVAL": 1}
    issuer.doc["keys"] = [jwk(keys["RS256"], "a")]
    jwks_credential(issuer)
    token = sign(keys["RS256"], "RS256", headers={"kid": "a"})
    assert through(client, echo, token)
    issuer.doc["keys"] = []
    clock[0] += 6
    assert not through(client, echo, token)
    assert issuer.request_count == 2


def test_unknown_kids_are_rate_limited(client, echo, route, keys, issuer, clock):
    issuer.doc["keys"] = [jwk(keys["RS256"], "a")]
    jwks_credential(issuer)
    assert through(client, echo, sign(keys["RS256"], "RS256", headers={"kid": "a"}))
    for n in range(10):  # a flood of invented kids costs no fetch within the interval
        assert not through(client, echo, sign(keys["RS256"], "RS256", headers={"kid": f"x{n}"}))
    assert issuer.request_count == 1
    clock[0] += 30
    for n in range(10):
        assert not through(client, echo, sign(keys["RS256"], "RS256", headers={"kid": f"y{n}"}))
    assert issuer.request_count == 2


def test_token_without_kid_is_tried_against_the_matching_keys(
    client, echo, route, keys, issuer, new_key
):
    issuer.doc["keys"] = [
        jwk(keys["RS256"], "a"),
        jwk(new_key, "b"),
        jwk(keys["ES256"], "c", "ES256"),
    ]
    jwks_credential(issuer)
    assert through(client, echo, sign(new_key, "RS256"))
    assert not through(client, echo, sign(keys["attacker"], "RS256"))


def test_server_down_keeps_the_last_good_set(client, echo, route, keys, issuer, clock, caplog):
    caplog.set_level(logging.WARNING, logger="django_gateway")
    issuer.doc["keys"] = [jwk(keys["RS256"], "a")]
    jwks_credential(issuer)
    token = sign(keys["RS256"], "RS256", headers={"kid": "a"})
    assert through(client, echo, token)
    issuer.stop()
    clock[0] += 1000  # long expired: a refresh is attempted, fails, and the old set serves on
    assert through(client, echo, token)
    assert through(client, echo, token)
    assert not through(client, echo, sign(keys["RS256"], "RS256", headers={"kid": "b"}))
    failures = [r.getMessage() for r in caplog.records if "JWKS fetch" in r.getMessage()]
    assert len(failures) == 1 and "keeping the previous key set" in failures[0]


def test_issuer_unreachable_from_the_start_is_a_401(client, echo, route, keys, issuer):
    issuer.stop()
    jwks_credential(issuer)
    assert not through(client, echo, sign(keys["RS256"], "RS256", headers={"kid": "a"}))


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/jwks", "http://[fe80::1]/jwks", "http://metadata.google.internal/"],
)
def test_link_local_jwks_urls_are_refused(client, echo, route, keys, url):
    add_credential("RS256", clean=False, jwks_url=url)
    assert not through(client, echo, sign(keys["RS256"], "RS256", headers={"kid": "a"}))
    with pytest.raises(ValueError, match="refused"):
        jwks.fetch_document(url, 1.0)


def test_a_name_resolving_to_a_metadata_address_is_refused(monkeypatch):
    metadata = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))]
    monkeypatch.setattr(jwks.socket, "getaddrinfo", lambda *args, **kwargs: metadata)
    with pytest.raises(OSError, match="refused address"):
        jwks.fetch_document("http://idp.example/jwks", 1.0)


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (Reply(404), "HTTP 404"),
        (redirect_to("http://169.254.169.254/"), "HTTP 302"),  # redirects are never followed
        (Reply(body=b"x" * (jwks.MAX_DOCUMENT_BYTES + 1)), "larger"),
    ],
)
def test_fetch_limits(reply, problem):
    with EchoUpstream(responder=reply) as server, pytest.raises(OSError, match=problem):
        jwks.fetch_document(server.url + JWKS_PATH, 2.0)


def test_key_selection(keys):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private = get_default_algorithms()["RS256"].to_jwk(keys["attacker"], as_dict=True)
    del private["key_ops"]  # ["sign"]: without it, the public half of a leaked key is still used
    document = {
        "keys": [
            jwk(keys["RS256"], "rsa"),
            jwk(keys["RS256"], "enc", use="enc"),
            jwk(keys["RS256"], "verify-not", key_ops=["encrypt"]),
            jwk(keys["RS256"], "rs512", alg="RS512"),
            jwk(keys["ES256"], "p256", "ES256"),
            jwk(keys["ES384"], "p384", "ES384"),
            jwk(keys["EdDSA"], "ed", "EdDSA"),
            jwk(weak, "weak"),
            {**private, "kid": "private"},
            {"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "n": "xx", "e": "AQAB", "kid": "garbage"},
            {"kty": "RSA", "kid": 7},
            "not a key",
        ]
    }
    keyset = jwks.parse_document(json.dumps(document).encode())

    def kids(algorithm):
        return {k.kid for k in keyset.keys if algorithm in k.algorithms}

    assert kids("RS256") == kids("PS256") == {"rsa", "private"}
    assert kids("RS512") == {"rsa", "private", "rs512"}
    assert kids("ES256") == {"p256"} and kids("ES384") == {"p384"} and kids("EdDSA") == {"ed"}
    assert kids("HS256") == set()
    assert all(isinstance(k.key, rsa.RSAPublicKey) for k in keyset.keys if k.kid == "private")
    assert keyset.matching("RS256", "p256") == ()
    for bad in (b"[]", b"{}", b'{"keys": {}}', b"not json"):
        with pytest.raises(ValueError):
            jwks.parse_document(bad)


def test_one_thread_fetches_a_url_at_a_time(keys):
    document = {"keys": [jwk(keys["RS256"], "a")]}
    slow = Reply(headers=[("Content-Type", "application/json")], body=json.dumps(document).encode())
    slow.delay = 0.3
    with EchoUpstream(responder=slow) as server:
        url = server.url + JWKS_PATH
        results: list = []
        threads = [
            threading.Thread(target=lambda: results.append(runtime.jwks.keys(url, "RS256", "a")))
            for _ in range(8)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert time.monotonic() - started < 3
        assert server.request_count == 1
        assert len(results) == 8 and all(len(found) == 1 for found in results)


def test_a_fetch_never_sees_the_token(client, echo, route, keys, issuer):
    issuer.doc["keys"] = [jwk(keys["RS256"], "a")]
    jwks_credential(issuer)
    token = sign(keys["RS256"], "RS256", headers={"kid": "a"})
    assert through(client, echo, token)
    (fetch,) = issuer.requests
    assert all(token not in value for _, value in fetch.headers)


# Where a fetch connects: the checked address, with TLS checked against the URL's host name.


def resolving(monkeypatch, name: str, *addresses: str) -> list[str]:
    """Make ``name`` resolve to ``addresses`` (in that order); returns the names looked up."""
    real, looked_up = socket.getaddrinfo, []

    def getaddrinfo(host, port, *args, **kwargs):
        if host != name:
            return real(host, port, *args, **kwargs)
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in addresses]

    monkeypatch.setattr(jwks.socket, "getaddrinfo", getaddrinfo)
    return looked_up


def test_a_fetch_connects_to_the_allowed_address_it_checked(monkeypatch, keys):
    document = {"keys": [jwk(keys["RS256"], "a")]}
    with EchoUpstream(responder=json_reply(document)) as server:
        looked_up = resolving(monkeypatch, "idp.example", "169.254.169.254", "127.0.0.1")
        body = jwks.fetch_document(f"http://idp.example:{server.port}{JWKS_PATH}", 2.0)
        (fetch,) = server.requests
    assert json.loads(body) == document
    assert fetch.header("Host") == f"idp.example:{server.port}"  # the name, not the address
    assert looked_up == ["idp.example"]  # resolved once, by the check: nothing re-resolves it


def _certificate(
    subject: str, key, issuer: x509.Certificate | None, issuer_key
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    is_ca = issuer is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name if is_ca else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class TLSIssuer(EchoUpstream):
    """A JWKS endpoint over TLS on 127.0.0.1 presenting ``certificate``; records each SNI name."""

    def __init__(self, responder, certificate: x509.Certificate, key, tmp_path) -> None:
        super().__init__(responder=responder)
        chain, key_file = tmp_path / "server.pem", tmp_path / "server.key"
        chain.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.server_names: list[str | None] = []
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(chain, key_file)
        self.context.sni_callback = lambda _sock, name, _context: self.server_names.append(name)

    def _serve(self, sock: socket.socket, connection_id: int) -> None:
        try:
            tls = self.context.wrap_socket(sock, server_side=True)
        except OSError:  # the client refused the certificate
            return
        super()._serve(tls, connection_id)


@pytest.fixture
def trusted_ca(tmp_path, monkeypatch):
    """A CA the client trusts (through OpenSSL's SSL_CERT_FILE, as a deployment could)."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("django-gateway test CA", key, None, key)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return ca, key


@pytest.mark.parametrize(
    ("certified_name", "signed_by_the_trusted_ca", "problem"),
    [
        ("idp.test", True, None),
        ("other.test", True, "match|mismatch"),  # a valid certificate for another name
        ("idp.test", False, "certificate verify failed"),  # a name nobody vouches for
    ],
)
def test_https_checks_the_certificate_against_the_url_host_name(
    monkeypatch, tmp_path, keys, trusted_ca, certified_name, signed_by_the_trusted_ca, problem
):
    ca, ca_key = trusted_ca
    if not signed_by_the_trusted_ca:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("someone else", ca_key, None, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    certificate = _certificate(certified_name, server_key, ca, ca_key)
    document = {"keys": [jwk(keys["RS256"], "a")]}
    with TLSIssuer(json_reply(document), certificate, server_key, tmp_path) as server:
        resolving(monkeypatch, "idp.test", "127.0.0.1")
        url = f"https://idp.test:{server.port}{JWKS_PATH}"
        if problem:
            with pytest.raises(ssl.SSLCertVerificationError, match=problem):
                jwks.fetch_document(url, 2.0)
            assert server.request_count == 0
        else:
            assert json.loads(jwks.fetch_document(url, 2.0)) == document
            (fetch,) = server.requests
            assert fetch.header("Host") == f"idp.test:{server.port}"
        assert server.server_names == ["idp.test"]  # SNI names the host, never the address
