"""Watchers per process: started lazily, shared, stopped when idle, not inherited by a fork."""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from django_gateway.discovery import cache, describe, instances_for
from django_gateway.runtime import runtime
from django_gateway.testing.consul import ConsulDouble
from tests.marks import forks_like_gunicorn

from .conftest import consul_service, eventually, timed, watcher_threads

REAL_CONSUL = os.environ.get("CONSUL_HTTP_ADDR")  # read before the fixtures clear it
REAL_TOKEN = os.environ.get("CONSUL_HTTP_TOKEN")


def test_one_watcher_per_distinct_query(double: ConsulDouble, configure: Callable) -> None:
    double.catalog.register("users", "u1", address="10.0.0.1", port=80, tags=["a", "b"])
    instances_for(consul_service(tags=("a", "b")), runtime.watchers)
    instances_for(consul_service(tags=("b", "a")), runtime.watchers)  # same query
    instances_for(consul_service(tags=("a",)), runtime.watchers)
    instances_for(consul_service(tags=("a",), include_warning=True), runtime.watchers)
    assert len(runtime.watchers) == 3 and len(watcher_threads()) == 3


def test_describe_does_not_wait_and_reports_the_first_answer(
    double: ConsulDouble, configure: Callable
) -> None:
    double.catalog.register("users", "u1", address="10.0.0.1", port=80)
    service = consul_service()
    first = describe(service, runtime.watchers)
    assert first.updated_at is None and first.index == 0 and first.instances == ()
    eventually(service, lambda r: r == {("10.0.0.1", 80): 1})
    state = describe(service, runtime.watchers)
    assert state.index == double.catalog.service_index("users")
    assert abs(state.updated_at - time.time()) < 2 and (state.error, state.stale) == ("", False)


def test_an_idle_watcher_stops_and_the_next_request_starts_another(
    double: ConsulDouble, configure: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(CONSUL_WAIT=0.2)
    monkeypatch.setattr(cache, "IDLE_AFTER", 0.1)
    double.catalog.register("users", "u1", address="10.0.0.1", port=80)
    service = consul_service()
    assert timed(service, limit=1.0) == {("10.0.0.1", 80): 1}
    deadline = time.monotonic() + 2
    while watcher_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not watcher_threads() and len(runtime.watchers) == 0
    assert timed(service, limit=1.0) == {("10.0.0.1", 80): 1}  # a new cold start
    assert len(watcher_threads()) == 1


@forks_like_gunicorn
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_watcher(double: ConsulDouble, configure: Callable) -> None:
    double.catalog.register("users", "u1", address="10.0.0.1", port=80)
    service = consul_service()
    assert timed(service, limit=1.0) == {("10.0.0.1", 80): 1}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running any pytest machinery
        try:
            inherited = len(runtime.watchers)
            found = [(i.host, i.port) for i in instances_for(service, runtime.watchers)]
            report = {"inherited": inherited, "found": found, "threads": len(watcher_threads())}
        except BaseException as exc:  # anything goes back to the parent
            report = {"error": repr(exc)}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 5)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the forked child did not answer")
        report = json.loads(os.read(read_end, 65536))
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    assert report == {"inherited": 0, "found": [["10.0.0.1", 80]], "threads": 1}
    assert len(runtime.watchers) == 1  # the parent keeps its own


@pytest.mark.skipif(not REAL_CONSUL, reason="set CONSUL_HTTP_ADDR to run against a real agent")
def test_a_real_agent(settings: Any) -> None:
    from django.conf import settings as django_settings

    from django_gateway.discovery import consul_client

    settings.GATEWAY = {
        **django_settings.GATEWAY,
        "CONSUL_ADDRESS": REAL_CONSUL,
        "CONSUL_TOKEN": REAL_TOKEN,
        "CONSUL_WAIT": 1.0,
        "CONSUL_MIN_QUERY_INTERVAL": 0.05,
    }
    name = f"gateway-test-{os.getpid()}-{int(time.time())}"
    agent = consul_client().agent
    agent.service.register(name, service_id=name, address="10.0.0.1", port=8080)
    try:
        service = consul_service(name)
        eventually(service, lambda r: r == {("10.0.0.1", 8080): 1}, within=5)
    finally:
        agent.service.deregister(name)
    eventually(service, lambda r: not isinstance(r, dict), within=5)


def test_a_watcher_that_crashed_is_replaced_by_the_next_request(
    double: ConsulDouble, configure: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_gateway.discovery import watcher as watcher_module

    real_parse = watcher_module.parse_entries
    calls = []

    def parse_once_badly(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(watcher_module, "parse_entries", parse_once_badly)
    double.catalog.register("users", "u1", address="10.0.0.1", port=80)
    service = consul_service()
    assert isinstance(timed(service, limit=1.5), Exception)  # the cold start saw no answer
    deadline = time.monotonic() + 1
    while watcher_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not watcher_threads()
    assert timed(service, limit=1.0) == {("10.0.0.1", 80): 1}
