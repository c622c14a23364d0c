"""``APIKey.last_used_at``: noted in memory per request, written in one batched UPDATE."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_gateway import operations
from django_gateway.auth import usage
from django_gateway.auth.usage import UsageRecorder
from django_gateway.models import APIKey, Consumer
from django_gateway.revision import current_revision
from django_gateway.runtime import runtime


@pytest.fixture
def recorder(monkeypatch):
    recorder = UsageRecorder()
    now = [1_700_000_000.0]
    monkeypatch.setattr(recorder, "clock", lambda: now[0])
    recorder.now = now
    monkeypatch.setattr(recorder, "_start", lambda: None)  # no thread unless a test wants one
    yield recorder
    recorder.stop()


@pytest.fixture
def keys(db):
    alice = Consumer.objects.create(username="alice")
    return [operations.issue_key(alice)[0] for _ in range(3)]


def at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def last_used(key):
    return APIKey.objects.get(pk=key.pk).last_used_at


def test_flush_writes_every_key_in_one_query_without_a_version_bump(
    recorder, keys, django_capture_on_commit_callbacks
):
    recorder.record(keys[0].pk)
    recorder.now[0] += 5
    recorder.record(keys[1].pk)
    recorder.record(keys[0].pk)
    version = current_revision()
    capture = django_capture_on_commit_callbacks()
    with capture as callbacks, CaptureQueriesContext(connection) as queries:
        assert recorder.flush() == 2
    assert len(queries) == 1 and queries[0]["sql"].startswith("UPDATE")
    assert callbacks == []  # no signal, so no bump_revision on commit
    assert current_revision() == version
    assert last_used(keys[0]) == last_used(keys[1]) == at(1_700_000_005.0)
    assert last_used(keys[2]) is None
    assert recorder.pending == {}


def test_nothing_pending_means_no_query(recorder, keys):
    with CaptureQueriesContext(connection) as queries:
        assert recorder.flush() == 0
    assert len(queries) == 0


def test_last_used_never_moves_backwards(recorder, keys):
    """Another process may flush an older use after a newer one was written."""
    APIKey.objects.filter(pk=keys[0].pk).update(last_used_at=at(1_700_000_100.0))
    recorder.record(keys[0].pk)
    recorder.record(keys[1].pk)
    recorder.flush()
    assert last_used(keys[0]) == at(1_700_000_100.0)
    assert last_used(keys[1]) == at(1_700_000_000.0)


def test_large_batches_are_split(recorder, keys, monkeypatch):
    monkeypatch.setattr(usage, "BATCH_SIZE", 2)
    for key in keys:
        recorder.record(key.pk)
    with CaptureQueriesContext(connection) as queries:
        assert recorder.flush() == 3
    assert len(queries) == 2
    assert all(last_used(key) is not None for key in keys)


def test_a_failed_flush_keeps_the_uses_and_does_not_raise(recorder, keys, monkeypatch, caplog):
    def broken(pending):
        raise RuntimeError("database down")

    write = usage._write
    monkeypatch.setattr(usage, "_write", broken)
    recorder.record(keys[0].pk)
    assert recorder.flush() == 0
    assert recorder.pending == {keys[0].pk: 1_700_000_000.0}
    assert "Could not record" in caplog.text
    monkeypatch.setattr(usage, "_write", write)
    assert recorder.flush() == 1
    assert last_used(keys[0]) is not None


@pytest.mark.django_db(transaction=True)
def test_the_background_thread_flushes_and_closes_its_connection(settings):
    settings.GATEWAY = {**settings.GATEWAY, "LAST_USED_FLUSH_INTERVAL": 0.05}
    key = operations.issue_key(Consumer.objects.create(username="bob"))[0]
    recorder = UsageRecorder()
    try:
        recorder.record(key.pk)
        thread = recorder._thread
        assert thread is not None and thread.daemon and thread.is_alive()
        recorder.record(key.pk)
        assert recorder._thread is thread  # one thread per process
        deadline = time.monotonic() + 5
        while last_used(key) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert last_used(key) is not None
        assert recorder.pending == {}
    finally:
        recorder.stop()
    assert not thread.is_alive()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_empty(monkeypatch):
    recorder = runtime.usage  # the recorder the process uses; the runtime replaces it in a child
    monkeypatch.setattr(recorder, "clock", lambda: 1_700_000_000.0)
    monkeypatch.setattr(recorder, "_start", lambda: None)
    recorder.record(1)
    recorder._thread = object()  # as if the parent's thread were running
    pid = os.fork()
    if pid == 0:  # the child: no inherited uses (the parent writes them), no thread
        recorder = runtime.usage
        ok = recorder.pending == {} and recorder._thread is None
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    recorder._thread = None
    assert os.waitstatus_to_exitcode(status) == 0
    assert recorder.pending == {1: 1_700_000_000.0}  # the parent keeps its own
    recorder.reset()
