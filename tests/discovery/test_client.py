"""How the Consul connection is configured: settings first, then CONSUL_HTTP_*, then defaults."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from django_gateway.checks import check_settings
from django_gateway.discovery import consul_client
from django_gateway.discovery.client import (
    connection_settings,
    consul_address,
    explain_error,
    split_address,
)
from django_gateway.testing.consul import ConsulDouble
from django_gateway.testing.upstreams import EchoUpstream


@pytest.fixture
def gateway(settings: Any) -> Any:
    def apply(**values: Any) -> None:
        settings.GATEWAY = values

    return apply


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("consul.internal:8501", ("consul.internal", 8501, None)),
        ("consul.internal", ("consul.internal", 8500, None)),
        ("[fd00::1]:8500", ("[fd00::1]", 8500, None)),
        ("https://10.0.0.1:8501", ("10.0.0.1", 8501, "https")),
        ("HTTP://h:1/", ("h", 1, "http")),
    ],
)
def test_addresses_are_split_with_ipv6_kept_in_brackets(text: str, expected: tuple) -> None:
    assert split_address(text, "X") == expected


@pytest.mark.parametrize("text", ["h:notaport", "h:1/v1/x", "user@h:1", ":8500", "h:1?x=1"])
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ImproperlyConfigured):
        split_address(text, "X")


def test_defaults_without_settings_or_environment(gateway: Any) -> None:
    gateway()
    assert connection_settings() == {
        "host": "127.0.0.1",
        "port": 8500,
        "scheme": "http",
        "verify": True,
        "cert": None,
        "dc": None,
        "connections_timeout": 5.0,
    }
    assert consul_client().token is None


def test_environment_fills_in_what_settings_leave_out(
    gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "https://[fd00::2]:8501")
    monkeypatch.setenv("CONSUL_HTTP_SSL_VERIFY", "false")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token")
    gateway()
    resolved = connection_settings()
    assert (resolved["host"], resolved["port"], resolved["scheme"]) == ("[fd00::2]", 8501, "https")
    assert resolved["verify"] is False
    client = consul_client()
    assert client.http.base_uri == "https://[fd00::2]:8501" and client.token == "env-token"
    monkeypatch.setenv("CONSUL_HTTP_SSL", "false")  # beats the scheme in CONSUL_HTTP_ADDR
    assert connection_settings()["scheme"] == "http"


def test_settings_beat_the_environment(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "https://10.0.0.1:8501")
    monkeypatch.setenv("CONSUL_HTTP_SSL", "true")
    monkeypatch.setenv("CONSUL_HTTP_SSL_VERIFY", "false")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token")
    gateway(
        CONSUL_ADDRESS="consul.internal:8500",
        CONSUL_SCHEME="http",
        CONSUL_VERIFY="/etc/ssl/consul-ca.pem",
        CONSUL_CERT="/etc/ssl/client.pem",
        CONSUL_KEY="/etc/ssl/client.key",
        CONSUL_DATACENTER="eu1",
        CONSUL_TOKEN="setting-token",
        CONSUL_TIMEOUT=2,
    )
    client = consul_client()
    assert client.http.base_uri == "http://consul.internal:8500"
    assert client.http.verify == "/etc/ssl/consul-ca.pem"
    assert client.http.cert == ("/etc/ssl/client.pem", "/etc/ssl/client.key")
    assert (client.dc, client.token, client.connections_timeout) == ("eu1", "setting-token", 2.0)


def test_a_scheme_in_the_address_setting_beats_consul_http_ssl(
    gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_SSL", "false")
    gateway(CONSUL_ADDRESS="https://consul.internal:8501")
    assert connection_settings()["scheme"] == "https"


@pytest.mark.parametrize(
    "values", [{"CONSUL_SCHEME": "ftp"}, {"CONSUL_VERIFY": 1}, {"CONSUL_ADDRESS": "a:b"}]
)
def test_unusable_values_are_improperly_configured(gateway: Any, values: dict) -> None:
    gateway(**values)
    with pytest.raises(ImproperlyConfigured):
        consul_client()


def test_the_client_reaches_the_double_through_consul_http_addr(
    gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConsulDouble() as double:
        monkeypatch.setenv("CONSUL_HTTP_ADDR", double.address)
        gateway()
        double.catalog.register("users", "users-1", port=8001)
        _, entries = consul_client().health.service("users")
        assert [e["Service"]["ID"] for e in entries] == ["users-1"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONSUL_WAIT", 601),
        ("CONSUL_WAIT", "55s"),
        ("CONSUL_MAX_STALE", -1),
        ("CONSUL_COLD_START_TIMEOUT", True),
        ("CONSUL_TOKEN", ""),
        ("CONSUL_ADDRESS", 8500),
    ],
)
def test_checks_refuse_bad_consul_settings(settings: Any, name: str, value: Any) -> None:
    settings.GATEWAY = {name: value}
    errors = [m for m in check_settings() if isinstance(m, checks.Error)]  # W001 without Redis
    assert [e.id for e in errors] == ["django_gateway.E005"]
    assert isinstance(errors[0], checks.Error) and name in errors[0].msg


# --- what a failure says: the address tried, and which setting chose it -------------------------


@pytest.mark.parametrize(
    ("values", "environment", "expected"),
    [
        (
            {},
            {},
            "Consul at http://127.0.0.1:8500 (the default address: neither "
            "GATEWAY['CONSUL_ADDRESS'] nor CONSUL_HTTP_ADDR is set; http by default)",
        ),
        (
            {"CONSUL_ADDRESS": "https://consul.internal:8501"},
            {"CONSUL_HTTP_ADDR": "10.0.0.1:8500", "CONSUL_HTTP_SSL": "false"},
            "Consul at https://consul.internal:8501 (address from GATEWAY['CONSUL_ADDRESS']; "
            "https from the scheme in GATEWAY['CONSUL_ADDRESS'])",
        ),
        (
            {"CONSUL_SCHEME": "https"},
            {"CONSUL_HTTP_ADDR": "[fd00::2]:8501"},
            "Consul at https://[fd00::2]:8501 (address from the CONSUL_HTTP_ADDR environment "
            "variable; https from GATEWAY['CONSUL_SCHEME'])",
        ),
        (
            {},
            {"CONSUL_HTTP_ADDR": "consul.internal:8501", "CONSUL_HTTP_SSL": "true"},
            "Consul at https://consul.internal:8501 (address from the CONSUL_HTTP_ADDR "
            "environment variable; https from CONSUL_HTTP_SSL)",
        ),
        (
            {},
            {"CONSUL_HTTP_ADDR": "https://consul.internal:8501"},
            "Consul at https://consul.internal:8501 (address from the CONSUL_HTTP_ADDR "
            "environment variable; https from the scheme in CONSUL_HTTP_ADDR)",
        ),
    ],
)
def test_the_address_says_which_setting_chose_it(
    gateway: Any, monkeypatch: pytest.MonkeyPatch, values: dict, environment: dict, expected: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    gateway(**values)
    assert str(consul_address()) == expected


def failure(client: Any) -> str:
    """What reading the catalog through ``client`` fails with, as a user reads it."""
    with pytest.raises(Exception) as info:  # whatever py-consul raises
        client.catalog.services()
    return explain_error(info.value)


def test_https_to_a_plain_http_agent_names_the_scheme_and_where_it_came_from(
    gateway: Any, monkeypatch: pytest.MonkeyPatch, double: ConsulDouble
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", f"https://{double.address}")
    gateway(CONSUL_TIMEOUT=1)
    text = failure(consul_client())
    assert text.startswith(
        f"TLS with Consul at https://{double.address} (address from the CONSUL_HTTP_ADDR "
        "environment variable; https from the scheme in CONSUL_HTTP_ADDR) failed: "
    )
    assert text.endswith(
        "If the agent serves plain http, use http; if its certificate is not trusted, set "
        "GATEWAY['CONSUL_VERIFY'] to its CA bundle."
    )
    assert "HTTPSConnectionPool" not in text and "Max retries" not in text


def test_a_server_that_is_not_consul_is_called_so(gateway: Any, echo: EchoUpstream) -> None:
    gateway(CONSUL_ADDRESS=f"{echo.host}:{echo.port}", CONSUL_TIMEOUT=1)
    assert failure(consul_client()).startswith(
        f"Consul at http://{echo.host}:{echo.port} (address from GATEWAY['CONSUL_ADDRESS']; "
        "http by default) did not answer like a Consul agent (Missing index header"
    )


def test_an_unusable_setting_is_its_own_message(gateway: Any) -> None:
    gateway(CONSUL_ADDRESS="a:b")
    with pytest.raises(ImproperlyConfigured) as info:
        consul_client()
    assert explain_error(info.value) == (
        "GATEWAY['CONSUL_ADDRESS'] 'a:b' is not host:port, [IPv6]:port or scheme://host:port."
    )
