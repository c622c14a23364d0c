"""What authentication produces: a typed identity on the Exchange, and where the credential was.

Every authenticator has one method, :meth:`Authenticator.authenticate`: it returns ``None`` when
the request carries no credential of its kind, an :class:`Identity` when it carries a valid one,
and raises :class:`~django_gateway.exceptions.Unauthorized` when it carries a bad one. Whatever it
found it records in :class:`CredentialUse`, so ``hide_credentials`` can remove exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..pipeline import Exchange


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """A consumer as the snapshot holds it (enabled consumers only)."""

    id: int
    username: str
    custom_id: str
    groups: frozenset[str]


@dataclass(frozen=True, slots=True)
class Identity:
    consumer: ConsumerConfig
    credential: str  # sent upstream as X-Credential-Identifier ("" for the anonymous consumer)
    groups: frozenset[str]  # the consumer's groups, plus any a JWT groups claim mapped in
    anonymous: bool = False
    credential_type: str = ""  # "key" or "jwt": with ``credential``, what rate limits count by


@dataclass(slots=True)
class CredentialUse:
    """Where the request carried its credential, for ``hide_credentials``."""

    headers: set[str] = field(default_factory=set)  # lower-case header names
    query_param: str | None = None
    cookie: str | None = None

    def __bool__(self) -> bool:
        return bool(self.headers or self.query_param or self.cookie)


class Authenticator(Protocol):
    #: The scheme named in WWW-Authenticate when this authenticator refuses a request.
    challenge: str

    def authenticate(self, exchange: Exchange) -> Identity | None: ...
