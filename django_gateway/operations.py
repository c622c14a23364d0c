"""Operations shared by the admin, the management commands and (later) the REST API.

Each front end stays thin: it parses its input, calls one function here, and presents the result.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from .versioning import bump_version


def set_enabled(queryset: QuerySet, enabled: bool) -> int:
    """Enable or disable many rows at once; bulk updates send no signals, so bump the version here."""
    with transaction.atomic():
        count = queryset.update(enabled=enabled)
        transaction.on_commit(bump_version, robust=True)
    return count
