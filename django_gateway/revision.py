"""The shared configuration version: bumped on every committed change, polled by every process.

Where the gateway's cache (``GATEWAY['CACHE_ALIAS']``) is shared between processes (Redis,
Memcached, database cache) the version is a counter in it, so a poll costs one cache read. Where it
is per process (local memory, dummy) a database row is the only thing all processes see, so the poll
reads that instead. Either way a change committed on any machine reaches every process within
``CONFIG_POLL_INTERVAL``.
"""

from __future__ import annotations

import logging
import uuid

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.db.models import F

from .conf import gateway_settings
from .models import ConfigRevision

logger = logging.getLogger(__name__)

CACHE_KEY = "django_gateway:config_version"


def _shared_cache() -> BaseCache | None:
    cache = caches[gateway_settings.CACHE_ALIAS]
    if isinstance(cache, LocMemCache | DummyCache):
        return None
    return cache


def _database_version() -> str:
    row = ConfigRevision.objects.filter(pk=1).values_list("revision", flat=True).first()
    return f"db:{row or 0}"


def current_revision() -> str:
    """An opaque token that changes whenever the configuration does.

    If the shared cache is unreachable the database revision answers instead: a change committed
    while the cache is down still reaches every process, and the switch back to the cache's token
    when it returns is itself a change, so nothing made during the outage is missed.
    """
    cache = _shared_cache()
    if cache is None:
        return _database_version()
    try:
        value = cache.get(CACHE_KEY)
        if value is None:
            # Evicted or a fresh cache: any new value makes every process rebuild once, which is safe.
            cache.add(CACHE_KEY, _fresh_token(), timeout=None)
            value = cache.get(CACHE_KEY)
    except Exception:
        logger.warning(
            "The configuration cache is unreachable; polling the database", exc_info=True
        )
        return _database_version()
    return f"cache:{value}"


def _fresh_token() -> int:
    return uuid.uuid4().int >> 80


def bump_revision() -> None:
    """Called on commit of any configuration change."""
    updated = ConfigRevision.objects.filter(pk=1).update(revision=F("revision") + 1)
    if not updated:
        # A random start, not 1: a table emptied and refilled (a test flush, a restored backup)
        # must not repeat a revision some process already holds, or it would never rebuild.
        ConfigRevision.objects.get_or_create(pk=1, defaults={"revision": _fresh_token()})
    cache = _shared_cache()
    if cache is None:
        return
    try:
        cache.incr(CACHE_KEY)
    except ValueError:  # missing key
        cache.set(CACHE_KEY, _fresh_token(), timeout=None)
    except Exception:  # the cache is down: processes rebuild when it answers with a new value
        logger.warning("Could not bump the configuration version in the cache", exc_info=True)
