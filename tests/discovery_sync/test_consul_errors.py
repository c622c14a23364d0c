"""What a user reads when the sync cannot read Consul.

``gateway_sync_services`` (with or without ``--dry-run``) and the admin's "Sync from Consul now"
show the same sentence: the address tried, the scheme, the setting or environment variable that
chose them and what to change; never the requests/urllib3 text
(``HTTPConnectionPool(host=..., port=...): Max retries exceeded...``). Each case is a real failure
of the Consul double: stopped, black-holed, answering 500, refusing the token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from django_gateway.models import Service
from django_gateway.testing.consul import ConsulDouble

pytestmark = pytest.mark.django_db

SYNC_URL = "/admin/django_gateway/service/sync-from-consul/"
RAW = ("HTTPConnectionPool", "Max retries", "NewConnectionError", "ReadTimeout", "urllib3")
ADDRESS_HINT = (
    "Check that a Consul agent listens there, or set GATEWAY['CONSUL_ADDRESS'] or the "
    "CONSUL_HTTP_ADDR environment variable to its address."
)


def command_error(*args: str) -> str:
    with pytest.raises(CommandError) as info:
        call_command("gateway_sync_services", *args, stdout=StringIO(), stderr=StringIO())
    return str(info.value)


def admin_error(admin_client: Any) -> str:
    response = admin_client.post(SYNC_URL, follow=True)
    assert response.status_code == 200
    (message,) = [str(m) for m in response.context["messages"]]
    return message


def assert_shown_everywhere(admin_client: Any, expected: str) -> None:
    """The command, its dry run and the admin button say ``expected``, and nothing is written."""
    assert command_error() == expected
    assert command_error("--dry-run") == expected
    assert admin_error(admin_client) == expected
    assert not any(raw in expected for raw in RAW)
    assert not Service.objects.exists()


def test_a_stopped_consul_names_the_address_and_the_setting_that_chose_it(
    admin_client: Any, double: ConsulDouble
) -> None:
    double.stop()
    assert_shown_everywhere(
        admin_client,
        f"Sync from Consul failed: Cannot connect to Consul at http://{double.address} "
        f"(address from GATEWAY['CONSUL_ADDRESS']; http by default): connection refused. "
        + ADDRESS_HINT,
    )


def test_an_address_from_consul_http_addr_says_so(
    admin_client: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConsulDouble() as double:
        monkeypatch.setenv("CONSUL_HTTP_ADDR", double.address)
        settings.GATEWAY = {"CONSUL_TIMEOUT": 1.0}
        double.stop()
        assert_shown_everywhere(
            admin_client,
            f"Sync from Consul failed: Cannot connect to Consul at http://{double.address} "
            "(address from the CONSUL_HTTP_ADDR environment variable; http by default): "
            "connection refused. " + ADDRESS_HINT,
        )


def test_a_black_holed_consul_is_a_timeout_naming_consul_timeout(
    admin_client: Any, double: ConsulDouble, settings: Any
) -> None:
    settings.GATEWAY = {**settings.GATEWAY, "CONSUL_TIMEOUT": 0.3}
    double.set_fault("blackhole")
    assert_shown_everywhere(
        admin_client,
        f"Sync from Consul failed: Consul at http://{double.address} (address from "
        "GATEWAY['CONSUL_ADDRESS']; http by default) did not answer in time "
        "(GATEWAY['CONSUL_TIMEOUT'] is 0.3 s). Check that this is the HTTP port of a Consul "
        "agent and that no firewall drops the traffic, or raise GATEWAY['CONSUL_TIMEOUT'].",
    )


def test_a_consul_answering_500_is_quoted(admin_client: Any, double: ConsulDouble) -> None:
    double.set_fault("error", status=500, body="No cluster leader")
    assert_shown_everywhere(
        admin_client,
        f"Sync from Consul failed: Consul at http://{double.address} (address from "
        "GATEWAY['CONSUL_ADDRESS']; http by default) answered 500 No cluster leader: the agent "
        "is reachable but could not serve the request. See the Consul agent's log.",
    )


@pytest.fixture
def acl_double(settings: Any) -> Iterator[ConsulDouble]:
    with ConsulDouble(acl_token="the-real-token") as server:
        settings.GATEWAY = {"CONSUL_ADDRESS": server.address, "CONSUL_TIMEOUT": 1.0}
        yield server


@pytest.mark.parametrize(
    ("where", "origin"),
    [
        ("setting", "The token comes from GATEWAY['CONSUL_TOKEN']"),
        ("environment", "The token comes from the CONSUL_HTTP_TOKEN environment variable"),
    ],
)
def test_a_refused_token_names_the_token_setting_never_the_token(
    admin_client: Any,
    acl_double: ConsulDouble,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    origin: str,
) -> None:
    if where == "setting":
        settings.GATEWAY = {**settings.GATEWAY, "CONSUL_TOKEN": "a-stale-token"}
    else:
        monkeypatch.setenv("CONSUL_HTTP_TOKEN", "a-stale-token")
    expected = (
        f"Sync from Consul failed: Consul at http://{acl_double.address} (address from "
        "GATEWAY['CONSUL_ADDRESS']; http by default) refused the ACL token: 403 ACL not found. "
        f"{origin}; set GATEWAY['CONSUL_TOKEN'] or CONSUL_HTTP_TOKEN to a token with "
        "service:read and node:read."
    )
    assert_shown_everywhere(admin_client, expected)
    assert "a-stale-token" not in expected


def test_the_watch_loop_reports_the_same_sentence_and_keeps_trying(double: ConsulDouble) -> None:
    double.stop()
    stop, err = threading.Event(), StringIO()
    thread = threading.Thread(
        target=call_command,
        args=("gateway_sync_services", "--watch"),
        kwargs={"stop": stop, "stdout": StringIO(), "stderr": err},
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + 3
        while err.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(2)
    first = err.getvalue().splitlines()[0]
    assert first == (
        f"Consul catalog watch failed, retrying: Cannot connect to Consul at "
        f"http://{double.address} (address from GATEWAY['CONSUL_ADDRESS']; http by default): "
        "connection refused. " + ADDRESS_HINT
    )
