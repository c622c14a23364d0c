"""JWT credentials as the snapshot holds them: one pinned algorithm and its verification material.

Key material is prepared once, when the snapshot is built (:func:`compile_credential`), so the
request path parses no PEM. :func:`credential_material` is also ``JWTCredential.clean``'s check,
so the admin refuses exactly what the snapshot would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import jwt as pyjwt
from django.core.exceptions import ValidationError
from jwt.algorithms import HMACAlgorithm

from . import jwks

logger = logging.getLogger(__name__)


class CredentialRow(Protocol):
    """The fields of a ``JWTCredential`` row a config is compiled from."""

    key: str
    consumer_id: int
    algorithm: str
    audience: str
    secret: str
    public_key: str
    jwks_url: str


@dataclass(frozen=True, slots=True)
class JWTCredentialConfig:
    """A JWT credential as the snapshot holds it, with its verification material ready to use."""

    key: str
    consumer_id: int
    algorithm: str
    #: HS*: the secret as bytes; RS*/PS*/ES*/EdDSA: a loaded public key; None with a JWKS URL.
    material: bytes | jwks.PublicKey | None
    jwks_url: str = ""
    audience: str = ""
    #: False when the material could not be loaded: every token for this credential is refused.
    usable: bool = True


def credential_material(
    algorithm: str, secret: str, public_key: str, jwks_url: str
) -> bytes | jwks.PublicKey | None:
    """The verification material (None: a JWKS URL), or ``ValidationError`` keyed by field.

    One rule set for ``JWTCredential.clean`` and the snapshot: one kind of material per algorithm.
    Messages never quote the secret or the key."""

    def bad(field: str, message: str) -> ValidationError:
        return ValidationError({field: message})

    public_key = public_key.strip()
    if algorithm in jwks.HMAC_MIN_BYTES:
        if public_key or jwks_url:
            field = "public_key" if public_key else "jwks_url"
            raise bad(field, f"{algorithm} uses the secret only; leave this empty.")
        data, minimum = secret.encode(), jwks.HMAC_MIN_BYTES[algorithm]
        if len(data) < minimum:
            raise bad("secret", f"{algorithm} needs a secret of at least {minimum} bytes.")
        try:
            return HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(data)
        except pyjwt.InvalidKeyError:
            raise bad("secret", "This looks like a key or certificate, not a secret.") from None
    if algorithm not in jwks.ASYMMETRIC:
        raise bad("algorithm", f"Unsupported algorithm {algorithm!r}.")
    if secret:
        raise bad("secret", f"{algorithm} verifies with a public key; leave the secret empty.")
    if public_key and jwks_url:
        raise bad("jwks_url", "Give either a public key or a JWKS URL, not both.")
    field = "public_key" if public_key or not jwks_url else "jwks_url"
    try:
        if public_key:
            return jwks.load_public_key(public_key, algorithm)
        if jwks_url:
            jwks.check_url(jwks_url)
            return None
    except ValueError as exc:
        raise bad(field, str(exc)) from None
    raise bad(field, f"{algorithm} needs a PEM public key, or a JWKS URL.")


_warned: set[tuple[str, str]] = set()


def compile_credential(credential: CredentialRow) -> JWTCredentialConfig:
    """Prepare a credential for the snapshot; bad material yields a config that refuses all tokens
    (logged once per credential and problem) instead of breaking the whole snapshot build."""
    common: dict[str, Any] = {
        "key": credential.key,
        "consumer_id": credential.consumer_id,
        "algorithm": credential.algorithm,
        "audience": credential.audience,
    }
    try:
        material = credential_material(
            credential.algorithm,
            credential.secret or "",
            credential.public_key or "",
            credential.jwks_url or "",
        )
    except ValidationError as exc:
        problem = " ".join(exc.messages)
        if (credential.key, problem) not in _warned:
            _warned.add((credential.key, problem))
            logger.warning("JWT credential %r refuses every token: %s", credential.key, problem)
        return JWTCredentialConfig(material=None, usable=False, **common)
    jwks_url = credential.jwks_url if material is None else ""
    return JWTCredentialConfig(material=material, jwks_url=jwks_url, **common)
