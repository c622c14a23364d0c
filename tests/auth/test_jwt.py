"""JWT routes end to end: what the client got, and what (if anything) the upstream received."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.core.exceptions import ValidationError

from django_gateway.models import Consumer, JWTCredential
from django_gateway.testing.state import reset_gateway_state
from django_gateway.testing.upstreams import EchoUpstream
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db

ISS = "issuer-1"
SECRET = "0123456789abcdef" * 4  # 64 bytes: long enough for HS512
DROP = object()  # a claim to leave out


@pytest.fixture(scope="session")
def keys() -> dict:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "RS256": rsa_key,
        "PS256": rsa_key,
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "ES384": ec.generate_private_key(ec.SECP384R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
        "attacker": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


def public_pem(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(autouse=True)
def gateway(settings):
    """No brute-force blocks: these tests fail on purpose, many times, from one address."""
    settings.GATEWAY = {**settings.GATEWAY, "AUTH_FAILURE_LIMIT": 0}
    return settings


def configure(settings, **values) -> None:
    settings.GATEWAY = {**settings.GATEWAY, **values}


@pytest.fixture
def route(echo):
    return make_route(make_service(echo), paths=["/api"], authentication="jwt")


def add_credential(algorithm="HS256", key=ISS, consumer=None, clean=True, **fields):
    consumer = consumer or Consumer.objects.create(username="alice", groups=["staff"])
    if algorithm.startswith("HS"):
        fields.setdefault("secret", SECRET)
    credential = JWTCredential(consumer=consumer, key=key, algorithm=algorithm, **fields)
    if clean:
        credential.full_clean()
    credential.save()
    reset_gateway_state()
    return credential


def sign(key=SECRET, algorithm="HS256", headers=None, **claims) -> str:
    claims.setdefault("iss", ISS)
    claims.setdefault("exp", int(time.time()) + 300)
    claims = {name: value for name, value in claims.items() if value is not DROP}
    return pyjwt.encode(claims, key, algorithm=algorithm, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, payload: dict, signature: bytes = b"") -> str:
    """A token built by hand, for what PyJWT refuses to produce."""
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


def hs256(payload: dict, secret: str = SECRET) -> str:
    """An HS256 token signed by hand, for payloads PyJWT refuses to encode."""
    head = b64(json.dumps({"alg": "HS256"}).encode())
    signing_input = f"{head}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def call(client, token=None, **extra):
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.get("/api/x", **extra)


def refused(response, echo: EchoUpstream, token: str = "") -> str:
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"] == 'Bearer realm="django-gateway"'
    body = response.json()
    assert body["status"] == 401 and body["request_id"]
    if token:
        assert token not in response.content.decode()
        assert not set(token.split(".")) - {""} & set(body["detail"].split())
    assert echo.request_count == 0
    return body["detail"]


def accepted(response, echo: EchoUpstream, username="alice", credential=ISS):
    assert response.status_code == 200, response.content
    (seen,) = echo.requests
    assert seen.header("x-consumer-id") == str(Consumer.objects.get(username=username).pk)
    assert seen.header("x-consumer-username") == username
    assert seen.header("x-credential-identifier") == credential
    assert seen.header("authorization") is None  # hide_credentials
    return seen


ASYMMETRIC = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]


@pytest.mark.parametrize("algorithm", ["HS256", "HS512", *ASYMMETRIC])
def test_each_algorithm_family_is_accepted(client, echo, route, keys, algorithm):
    if algorithm.startswith("HS"):
        add_credential(algorithm)
        token = sign(SECRET, algorithm)
    else:
        add_credential(algorithm, public_key=public_pem(keys[algorithm]))
        token = sign(keys[algorithm], algorithm)
    seen = accepted(call(client, token), echo)
    assert seen.header("x-consumer-groups") == "staff"


def test_scheme_is_case_insensitive_and_other_schemes_are_not_ours(client, echo, route):
    add_credential()
    assert call(client, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz").status_code == 401
    assert "carries none" in refused(call(client, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz"), echo)
    accepted(client.get("/api/x", HTTP_AUTHORIZATION=f"bearer {sign()}"), echo)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", DROP])
def test_unsigned_tokens_are_refused(client, echo, route, alg):
    add_credential()
    header = {"typ": "JWT"} if alg is DROP else {"typ": "JWT", "alg": alg}
    token = forge(header, {"iss": ISS, "exp": int(time.time()) + 300})
    assert "algorithm" in refused(call(client, token), echo, token)


def test_hs256_signed_with_the_rsa_public_key_is_refused(client, echo, route, keys):
    pem = public_pem(keys["RS256"])
    add_credential("RS256", public_key=pem)
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"iss": ISS, "exp": int(time.time()) + 300}).encode())
    mac = hmac.new(pem.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    token = f"{head}.{body}.{b64(mac)}"
    assert "algorithm" in refused(call(client, token), echo, token)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": -60}, "expired"),
        ({"nbf": 120}, "not valid yet"),
        ({"iat": 120}, "not valid yet"),
        ({"exp": DROP}, "'exp'"),
        ({"exp": "2030-01-01"}, "numeric"),
        ({"exp": "4102444800"}, "numeric"),
        ({"nbf": "0"}, "numeric"),
        ({"exp": True}, "numeric"),
    ],
)
def test_date_claims(client, echo, route, claims, reason):
    add_credential()
    now = int(time.time())
    claims = {k: now + v if type(v) is int else v for k, v in claims.items()}
    token = sign(**claims)
    assert reason in refused(call(client, token), echo, token)


def test_leeway(client, echo, route, settings):
    add_credential()
    token = sign(exp=int(time.time()) - 5)  # within the default 10 s
    accepted(call(client, token), echo)
    configure(settings, JWT_LEEWAY=0)
    echo.clear()
    assert "expired" in refused(call(client, token), echo)


def test_exp_may_be_optional(client, echo, route, settings):
    configure(settings, JWT_REQUIRE_EXP=False)
    add_credential()
    accepted(call(client, sign(exp=DROP)), echo)


def test_maximum_expiration(client, echo, route, settings):
    configure(settings, JWT_MAXIMUM_EXPIRATION=3600, JWT_REQUIRE_EXP=False)
    add_credential()
    now = int(time.time())
    assert "longer" in refused(call(client, sign(exp=now + 7200)), echo)
    assert "'exp'" in refused(call(client, sign(exp=DROP)), echo)  # required when a maximum is set
    accepted(call(client, sign(exp=now + 600)), echo)


@pytest.mark.parametrize(
    ("aud", "ok"), [("api", True), (["x", "api"], True), ("other", False), (DROP, False)]
)
def test_audience(client, echo, route, aud, ok):
    add_credential(audience="api")
    response = call(client, sign(aud=aud))
    if ok:
        accepted(response, echo)
    else:
        assert "aud" in refused(response, echo)


def test_aud_is_not_checked_when_the_credential_names_none(client, echo, route):
    add_credential()
    accepted(call(client, sign(aud="anything")), echo)


@pytest.mark.parametrize("iss", ["someone-else", DROP, ["issuer-1"]])
def test_unknown_or_missing_key_claim(client, echo, route, iss):
    add_credential()
    token = hs256({"exp": int(time.time()) + 300} | ({} if iss is DROP else {"iss": iss}))
    assert "known credential" in refused(call(client, token), echo)


def test_custom_key_claim(client, echo, route, settings):
    configure(settings, JWT_KEY_CLAIM="client_id")
    add_credential()
    refused(call(client, sign()), echo)  # iss alone no longer names the credential
    accepted(call(client, sign(iss=DROP, client_id=ISS)), echo)


def test_oversized_token_is_refused_before_parsing(client, echo, route):
    add_credential()
    token = "a" * 100_000
    assert "larger" in refused(call(client, token), echo, token)


@pytest.mark.parametrize(
    "token", ["abc", "a.b", "a.b.c", "e30.e30.e30.e30", "W10.e30.", "e30.W10."]
)
def test_malformed_tokens(client, echo, route, token):
    add_credential()
    refused(call(client, token), echo)


def test_embedded_and_remote_keys_in_the_header_are_ignored(client, echo, route, keys):
    add_credential("RS256", public_key=public_pem(keys["RS256"]))
    attacker = keys["attacker"]
    jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    with EchoUpstream() as evil:
        headers = {"jwk": jwk, "jku": f"{evil.url}/jwks", "x5u": f"{evil.url}/cert", "kid": "x"}
        token = sign(attacker, "RS256", headers=headers)
        assert "signature" in refused(call(client, token), echo, token)
        assert evil.request_count == 0


def test_bad_signature(client, echo, route, keys):
    add_credential("ES256", public_key=public_pem(keys["ES256"]))
    head, _, signature = sign(keys["ES256"], "ES256").split(".")
    payload = b64(json.dumps({"iss": ISS, "exp": int(time.time()) + 300, "admin": True}).encode())
    token = f"{head}.{payload}.{signature}"
    assert "signature" in refused(call(client, token), echo, token)


def test_wrong_secret(client, echo, route):
    add_credential()
    assert "signature" in refused(call(client, sign("x" * 32 + SECRET)), echo)


def test_disabled_consumer_is_refused(client, echo, route):
    credential = add_credential()
    Consumer.objects.filter(pk=credential.consumer_id).update(enabled=False)
    reset_gateway_state()
    refused(call(client, sign()), echo)


def test_cookie_source(client, echo, route, settings):
    configure(settings, JWT_COOKIE="gw_jwt")
    add_credential()
    client.cookies["gw_jwt"] = sign()
    client.cookies["theme"] = "dark"
    seen = accepted(client.get("/api/x"), echo)
    assert seen.header("cookie") == "theme=dark"  # only the token cookie is hidden


def test_groups_claim_adds_valid_group_names(client, echo, route, settings):
    configure(settings, JWT_GROUPS_CLAIM="realm_access.roles")
    add_credential()
    token = sign(realm_access={"roles": ["admins", "bad group!", 7, "ops"]})
    assert accepted(call(client, token), echo).header("x-consumer-groups") == "admins, ops, staff"
    configure(settings, JWT_GROUPS_CLAIM="scope")
    echo.clear()
    seen = accepted(call(client, sign(scope="read write")), echo)
    assert seen.header("x-consumer-groups") == "read, staff, write"


def test_a_refused_token_is_still_hidden_from_the_anonymous_path(client, echo, route):
    credential = add_credential()
    route.anonymous_consumer = Consumer.objects.create(username="guest")
    route.save()
    reset_gateway_state()
    response = call(client, sign(exp=int(time.time()) - 600))
    assert response.status_code == 200
    (seen,) = echo.requests
    assert seen.header("x-anonymous-consumer") == "true"
    assert seen.header("authorization") is None
    assert credential.key not in (seen.header("x-credential-identifier") or "")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # signing with it
def test_unloadable_material_refuses_its_tokens_without_breaking_the_snapshot(
    client, echo, route, caplog
):
    caplog.set_level(logging.WARNING, logger="django_gateway")
    add_credential("RS256", key="broken", clean=False, public_key="not a key")
    short = "tooshort-secret-value"
    add_credential(
        key="short", consumer=Consumer.objects.create(username="bob"), clean=False, secret=short
    )
    add_credential(consumer=Consumer.objects.create(username="carol"))
    accepted(call(client, sign()), echo, username="carol")
    echo.clear()
    refused(call(client, sign(iss="short", key=short)), echo)
    for _ in range(2):
        reset_gateway_state()
        refused(call(client, forge({"alg": "RS256"}, {"iss": "broken", "exp": 2**40}, b"x")), echo)
    warnings = [r.getMessage() for r in caplog.records if "refuses every token" in r.getMessage()]
    assert len(warnings) == 2 and "'broken'" in warnings[0] + warnings[1]
    assert short not in " ".join(warnings)


def test_tokens_never_reach_the_logs(client, echo, route, caplog, keys, settings):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django_gateway")  # the test settings say INFO
    configure(settings, JWT_GROUPS_CLAIM="groups")
    add_credential("RS256", key="broken", clean=False, public_key="not a key")
    add_credential(consumer=Consumer.objects.get(username="alice"))
    good = sign()
    tokens = [
        good,
        sign(exp=int(time.time()) - 600),
        sign("y" * 64),
        sign(iss="nobody"),
        sign(iss="broken"),
        sign(groups=["ok", "not ok"]),
        "a" * 9000,
    ]
    for token in tokens:
        call(client, token)
    assert echo.request_count == 2
    logged = " ".join(f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records)
    assert {"django_gateway.auth.jwt", "django_gateway.access"} <= {r.name for r in caplog.records}
    for token in tokens:
        assert token not in logged
        assert token.split(".")[-1] not in logged


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"algorithm": "HS256", "secret": "x" * 31}, {"secret"}),
        ({"algorithm": "HS512", "secret": "x" * 40}, {"secret"}),
        (
            {"algorithm": "HS256", "secret": "x" * 32, "jwks_url": "https://idp.example/jwks"},
            {"jwks_url"},
        ),
        ({"algorithm": "RS256"}, {"public_key"}),
        ({"algorithm": "RS256", "secret": SECRET, "jwks_url": "https://idp.example/j"}, {"secret"}),
        ({"algorithm": "RS256", "public_key": "-----BEGIN PUBLIC KEY-----\nxx"}, {"public_key"}),
        (
            {"algorithm": "RS256", "public_key": "ES256", "jwks_url": "https://i.example/j"},
            {"jwks_url"},
        ),
        ({"algorithm": "RS256", "public_key": "ES256"}, {"public_key"}),
        ({"algorithm": "ES384", "public_key": "ES256"}, {"public_key"}),
        ({"algorithm": "EdDSA", "public_key": "RS256"}, {"public_key"}),
        ({"algorithm": "ES256", "jwks_url": "ftp://idp.example/jwks"}, {"jwks_url"}),
        ({"algorithm": "ES256", "jwks_url": "http://169.254.169.254/jwks"}, {"jwks_url"}),
        ({"algorithm": "PS256", "public_key": "RS256"}, set()),
        ({"algorithm": "EdDSA", "public_key": "EdDSA"}, set()),
        ({"algorithm": "ES256", "jwks_url": "https://idp.example/.well-known/jwks.json"}, set()),
    ],
)
def test_credential_clean(keys, fields, errors):
    if fields.get("public_key") in keys:
        fields["public_key"] = public_pem(keys[fields["public_key"]])
    credential = JWTCredential(consumer=Consumer.objects.create(username="c"), key="k", **fields)
    if not errors:
        credential.full_clean()
        return
    with pytest.raises(ValidationError) as info:
        credential.full_clean()
    assert set(info.value.message_dict) == errors
