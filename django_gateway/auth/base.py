"""What authentication produces: a typed identity on the Exchange, and where the credential was.

Every authenticator has one method, :meth:`Authenticator.authenticate`: it returns ``None`` when
the request carries no credential of its kind, an :class:`Identity` when it carries a valid one,
and raises :class:`~django_gateway.exceptions.Unauthorized` when it carries a bad one. Whatever it
found it records in :class:`CredentialUse`, so ``hide_credentials`` can remove exactly that.
"""

from __future__ import annotations

from typing import Protocol

from ..config import Identity
from ..exchange import Exchange


class Authenticator(Protocol):
    #: The scheme named in WWW-Authenticate when this authenticator refuses a request.
    challenge: str

    def authenticate(self, exchange: Exchange) -> Identity | None: ...
