"""Every system check ID fires on the mistake it names, and stays quiet otherwise."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_gateway.checks import check_settings
from django_gateway.settings_table import DEFAULTS, SETTINGS

# Django 6 runs database-tagged checks by default, and E008 asks whether rate limits exist.
pytestmark = pytest.mark.django_db

GW = "django_gateway.middleware.GatewayMiddleware"
SEC = "django.middleware.security.SecurityMiddleware"


def ids(**kwargs) -> list[str]:
    """The gateway's check IDs, minus the silenced ones (as ``manage.py check`` reports them)."""
    with override_settings(**kwargs):
        return sorted(m.id for m in run_checks(tags=["django_gateway"]) if not m.is_silenced())


def test_test_settings_are_clean():
    assert ids() == []


@pytest.mark.parametrize(
    ("middleware", "expected"),
    [
        ([SEC], ["django_gateway.E001"]),
        ([SEC, GW, GW], ["django_gateway.E002"]),
        ([SEC, "django.middleware.gzip.GZipMiddleware", GW], ["django_gateway.E003"]),
        (
            [SEC, "django.contrib.sessions.middleware.SessionMiddleware", GW],
            ["django_gateway.E003"],
        ),
        ([SEC, GW, "django.middleware.gzip.GZipMiddleware"], []),
    ],
)
def test_middleware_checks(middleware, expected):
    assert ids(MIDDLEWARE=middleware) == expected


@pytest.mark.parametrize(
    ("gateway", "expected"),
    [
        ({"CONFIG_POLL_INTERVALL": 1}, ["django_gateway.E004"]),
        ({"CONFIG_POLL_INTERVAL": "1"}, ["django_gateway.E005"]),
        ({"CONFIG_POLL_INTERVAL": 0}, ["django_gateway.E005"]),
        ({"EJECT_AFTER_FAILURES": True}, ["django_gateway.E005"]),
        ({"MAX_BODY_SIZE": -1}, ["django_gateway.E005"]),
        ({"MAX_BODY_SIZE": None}, []),
        ({"ACCESS_LOG": "yes"}, ["django_gateway.E005"]),
        ({"TRUSTED_PROXIES": "10.0.0.0/8"}, ["django_gateway.E005"]),
        ({"TRUSTED_PROXIES": ["10.0.0.0/8", "not-a-cidr"]}, ["django_gateway.E006"]),
        ({"CACHE_ALIAS": "missing"}, ["django_gateway.E007"]),
        ({"API_KEY_HEADERS": ["X_API_Key"]}, ["django_gateway.E005"]),
        ({"API_KEY_HEADERS": []}, ["django_gateway.E005"]),
        ({"API_KEY_HEADERS": ["X-API-Key", "Apikey"]}, []),
        ({"API_KEY_QUERY_PARAM": ""}, ["django_gateway.E005"]),
        ({"API_KEY_QUERY_PARAM": "apikey"}, []),
        ({"JWT_MAXIMUM_EXPIRATION": 0}, ["django_gateway.E005"]),
        ({"JWT_MAXIMUM_EXPIRATION": 3600}, []),
        ({"JWT_REQUIRE_EXP": "no"}, ["django_gateway.E005"]),
        ({"AUTH_FAILURE_LIMIT": -1}, ["django_gateway.E005"]),
    ],
)
def test_settings_checks(gateway, expected):
    assert ids(GATEWAY=gateway) == expected


def test_per_process_cache_warns():
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert ids(CACHES=caches, GATEWAY={}, SILENCED_SYSTEM_CHECKS=[]) == ["django_gateway.W001"]


LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDIS = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1"}}


def rate_limit_ids(databases=None, **kwargs) -> list[str]:
    from django_gateway.checks import check_rate_limit_cache

    with override_settings(**kwargs):
        return [message.id for message in check_rate_limit_cache(databases=databases)]


def test_rate_limits_without_redis_count_per_process_and_never_block_migrate():
    """A RateLimit row turns no check into an error: it only adds W002 where the DB is asked."""
    from django.core.management import call_command

    from django_gateway.models import RateLimit

    assert rate_limit_ids(["default"], CACHES=LOCMEM, GATEWAY={}) == []  # no limit yet
    RateLimit.objects.create(limit=10)
    assert rate_limit_ids(["default"], CACHES=LOCMEM, GATEWAY={}) == ["django_gateway.W002"]
    assert rate_limit_ids(None, CACHES=LOCMEM, GATEWAY={}) == []  # no database asked for
    assert rate_limit_ids(["default"], CACHES=REDIS, GATEWAY={}) == []
    with override_settings(CACHES=LOCMEM, GATEWAY={}, SILENCED_SYSTEM_CHECKS=[]):
        call_command("migrate", verbosity=0)  # raised SystemCheckError (E008) before


def test_refusing_to_count_without_redis_is_a_settings_error():
    strict = {"RATE_LIMIT_LOCAL_FALLBACK": False}
    assert rate_limit_ids(None, CACHES=LOCMEM, GATEWAY=strict) == ["django_gateway.E008"]
    assert rate_limit_ids(None, CACHES=REDIS, GATEWAY=strict) == []


def test_rate_limit_cache_alias_must_exist():
    gateway = {"RATE_LIMIT_CACHE_ALIAS": "limits"}
    assert ids(CACHES=REDIS, GATEWAY=gateway) == ["django_gateway.E007"]
    assert ids(CACHES={**REDIS, "limits": REDIS["default"]}, GATEWAY=gateway) == []
    assert ids(GATEWAY={"RATE_LIMIT_TIMEOUT": 0}) == ["django_gateway.E005"]
    assert ids(GATEWAY={"RATE_LIMIT_HEADERS": "no"}) == ["django_gateway.E005"]


# --- the settings table drives E004/E005 ----------------------------------------------------------


def settings_errors(gateway: dict) -> list:
    with override_settings(GATEWAY=gateway):
        return [
            message for message in check_settings() if message.id.startswith("django_gateway.E")
        ]


def test_writing_out_every_default_changes_nothing():
    assert ids(GATEWAY=dict(DEFAULTS)) == []


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.name)
def test_every_setting_refuses_a_value_of_no_use(setting):
    """No row of the table is left unchecked: an arbitrary object is an E005 naming the key."""
    errors = [e for e in settings_errors({setting.name: object()}) if e.id == "django_gateway.E005"]
    assert [e.msg.split(" ", 1)[0] for e in errors] == [f"GATEWAY[{setting.name!r}]"]
    assert errors[0].hint == f"Allowed: {setting.rule.text} (docs/settings.md)."


@pytest.mark.parametrize(
    ("gateway", "expected"),
    [
        ({"CONFIG_POLL_INTERVAL": 0.05}, []),
        ({"CONFIG_POLL_INTERVAL": 3600}, []),
        ({"CONFIG_POLL_INTERVAL": 3600.5}, ["django_gateway.E005"]),
        ({"JWKS_CACHE_SECONDS": 0}, ["django_gateway.E005"]),
        ({"MAX_BODY_SIZE": 1.5}, ["django_gateway.E005"]),
        ({"MAX_BODY_SIZE": 0}, []),
        ({"CONSUL_SCHEME": "https"}, []),
        ({"CONSUL_SCHEME": "ftp"}, ["django_gateway.E005"]),
        ({"CONSUL_VERIFY": "/etc/ssl/consul-ca.pem"}, []),
        ({"CONSUL_VERIFY": False}, []),
        ({"CONSUL_VERIFY": 1}, ["django_gateway.E005"]),
        ({"CONSUL_VERIFY": ""}, ["django_gateway.E005"]),
        ({"VIA": ""}, []),
        # An unhashable alias is reported, not a crash of the check run.
        ({"CACHE_ALIAS": ["default"]}, ["django_gateway.E005", "django_gateway.E007"]),
        ({"RATE_LIMIT_CACHE_ALIAS": ["x"]}, ["django_gateway.E005", "django_gateway.E007"]),
    ],
)
def test_values_are_checked_as_the_settings_page_describes_them(gateway, expected):
    assert ids(GATEWAY=gateway) == expected


def test_a_range_error_says_the_range():
    (error,) = settings_errors({"EJECT_COOLDOWN": 0})
    assert error.msg == "GATEWAY['EJECT_COOLDOWN'] must be a number from 0.1 to 86,400."
