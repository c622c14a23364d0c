"""``APIKey.last_used_at`` without a database write per request.

A request that authenticates with a key only notes the time in an in-process map (key id → last
use). A daemon thread, started on the first use, writes the map every ``LAST_USED_FLUSH_INTERVAL``
seconds with one bulk ``UPDATE`` (a ``CASE`` over the keys used since the last flush), then closes
its database connection so an idle gateway holds none. ``queryset.update()`` sends no signals, so
these writes never bump the configuration version and never rebuild anyone's snapshot.

The map is per process: after a fork (gunicorn workers) the child starts with an empty map and no
thread, and starts its own on its first use. Uses noted in the last interval before a process
exits are lost; the next use of the key notes them again. A timestamp never moves backwards, so
processes flushing in any order leave the latest use.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from django.conf import settings
from django.db import connections
from django.db.models import Case, DateTimeField, F, Q, Value, When
from django.utils import timezone

from ..conf import gateway_settings
from ..models import APIKey

logger = logging.getLogger(__name__)

#: Keys per UPDATE: each adds three parameters, and SQLite builds before 3.32 allow 999.
BATCH_SIZE = 200


class UsageRecorder:
    """Collects key uses in memory and writes them in batches; ``clock`` is a seam for tests."""

    clock = staticmethod(time.time)

    def __init__(self) -> None:
        # A forked child gets a new recorder from the runtime: it inherits neither the parent's
        # thread nor its pending uses (the parent writes those), nor a lock held at fork time.
        self._pending: dict[int, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def record(self, key_id: int) -> None:
        """Note a use of key ``key_id`` now: a dictionary write, no I/O."""
        now = self.clock()
        with self._lock:
            self._pending[key_id] = now
        if self._thread is None:
            self._start()

    @property
    def pending(self) -> dict[int, float]:
        """A copy of the uses not written yet."""
        with self._lock:
            return dict(self._pending)

    def flush(self) -> int:
        """Write the pending uses (one query per ``BATCH_SIZE`` keys); the number of keys written.

        Never raises: on a database error the uses go back to the map for the next flush.
        """
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            _write(pending)
        except Exception:
            logger.warning("Could not record when %d API keys were last used", len(pending))
            logger.debug("last_used_at flush failed", exc_info=True)
            with self._lock:
                for key_id, used in pending.items():
                    if self._pending.get(key_id, 0.0) < used:
                        self._pending[key_id] = used
            return 0
        return len(pending)

    def reset(self) -> None:
        """Forget pending uses (tests; the thread keeps running)."""
        with self._lock:
            self._pending.clear()

    def stop(self) -> None:
        """Ask the thread to end after its current wait; a later use starts a new one."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        thread.join(timeout=5)
        self._thread = None
        self._stopping = threading.Event()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run,
                args=(self._stopping,),
                name="django-gateway-last-used",
                daemon=True,
            )
            thread = self._thread
        thread.start()

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.wait(max(float(gateway_settings.LAST_USED_FLUSH_INTERVAL), 0.01)):
            try:
                self.flush()
            except Exception:  # flush() does not raise; this thread must survive anything
                logger.exception("The last_used_at writer failed")
            finally:
                _close_connections()


def _close_connections() -> None:
    """This thread's connections only (Django's are per thread): none is held while idle."""
    try:
        connections.close_all()
    except Exception:
        logger.debug("Closing the last_used_at writer's connection failed", exc_info=True)


def _write(pending: dict[int, float]) -> None:
    """``UPDATE ... SET last_used_at = CASE WHEN id=1 AND (last_used_at IS NULL OR
    last_used_at < t1) THEN t1 ... ELSE last_used_at END WHERE id IN (...)``."""
    items = sorted(pending.items())
    for start in range(0, len(items), BATCH_SIZE):
        batch = items[start : start + BATCH_SIZE]
        whens = []
        for key_id, used in batch:
            at = datetime.fromtimestamp(used, tz=UTC)
            if not settings.USE_TZ:
                at = timezone.make_naive(at)
            older = Q(last_used_at__isnull=True) | Q(last_used_at__lt=at)
            whens.append(When(Q(pk=key_id) & older, then=Value(at)))
        APIKey.objects.filter(pk__in=[key_id for key_id, _ in batch]).update(
            last_used_at=Case(*whens, default=F("last_used_at"), output_field=DateTimeField())
        )
