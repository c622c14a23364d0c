"""The shared configuration version: it must change on every change, and never come back."""

from __future__ import annotations

import pytest

from django_gateway.models import ConfigRevision
from django_gateway.revision import bump_revision, current_revision

pytestmark = pytest.mark.django_db


@pytest.fixture
def per_process_cache(settings):
    """No shared cache: the version is the database revision."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def test_every_bump_changes_the_database_revision(per_process_cache):
    seen = set()
    for _ in range(3):
        bump_revision()
        seen.add(current_revision())
    assert len(seen) == 3 and all(token.startswith("db:") for token in seen)


def test_an_emptied_revision_table_does_not_repeat_a_revision(per_process_cache):
    """A flushed or restored table restarts from a random revision, so a process that already
    holds "db:1" still sees the next change."""
    ConfigRevision.objects.all().delete()
    bump_revision()
    first = current_revision()
    ConfigRevision.objects.all().delete()
    bump_revision()
    assert current_revision() != first


def test_the_shared_cache_counter_changes_on_every_bump():
    first = current_revision()
    bump_revision()
    assert current_revision() != first
