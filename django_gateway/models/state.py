"""The configuration revision, for projects whose default cache is not shared between processes."""

from __future__ import annotations

from django.db import models


class ConfigRevision(models.Model):
    """A single row whose ``revision`` goes up on every committed configuration change.

    With a shared cache (Redis, Memcached) the version lives there and this row is not read on the
    poll path; with a per-process cache it is the only thing every process can see.
    """

    revision = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "configuration revision"

    def __str__(self) -> str:
        return f"revision {self.revision}"
