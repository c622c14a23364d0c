"""``gateway_issue_key``: the key once on stdout, its prefix and expiry on stderr."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from django_gateway.auth.key_store import parse_key
from django_gateway.management.commands.gateway_issue_key import parse_duration
from django_gateway.models import APIKey, Consumer
from django_gateway.runtime import runtime
from django_gateway.testing.state import reset_gateway_state
from tests.conftest import make_route, make_service

pytestmark = pytest.mark.django_db


def issue(*args):
    out, err = StringIO(), StringIO()
    call_command("gateway_issue_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def alice():
    return Consumer.objects.create(username="alice")


def test_prints_the_key_once_and_stores_its_hash(alice):
    out, err = issue("alice", "--name", "ci")
    plaintext = out.strip()
    prefix, _ = parse_key(plaintext)
    key = APIKey.objects.get()
    assert (key.prefix, key.name, key.consumer, key.expires_at) == (prefix, "ci", alice, None)
    assert key.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext not in err
    assert prefix in err and "expires: never" in err and "not shown again" in err


def test_expires_in(alice):
    before = timezone.now()
    _, err = issue("alice", "--expires-in", "30d")
    key = APIKey.objects.get()
    assert before + timedelta(days=30) <= key.expires_at <= timezone.now() + timedelta(days=30)
    assert key.expires_at.isoformat(timespec="seconds") in err


def test_the_issued_key_works_through_the_gateway(alice, client, echo, settings):
    settings.GATEWAY = {**settings.GATEWAY, "AUTH_FAILURE_LIMIT": 0}
    make_route(make_service(echo), authentication="key")
    plaintext = issue("alice")[0].strip()
    reset_gateway_state()
    assert client.get("/api/x", HTTP_X_API_KEY=plaintext).status_code == 200
    assert client.get("/api/x").status_code == 401
    runtime.usage.reset()  # this test's transaction is rolled back: nothing to write later


def test_unknown_consumer(db):
    with pytest.raises(CommandError, match="No consumer with username 'nobody'"):
        issue("nobody")
    assert not APIKey.objects.exists()


@pytest.mark.parametrize("value", ["30", "d", "-1d", "0s", "1.5h", "30 days", "1y", "9" * 10 + "w"])
def test_bad_durations(alice, value):
    with pytest.raises(CommandError, match="--expires-in"):
        issue("alice", "--expires-in", value)
    assert not APIKey.objects.exists()


def test_disabled_consumer_gets_a_key_and_a_warning(db):
    Consumer.objects.create(username="bob", enabled=False)
    out, err = issue("bob")
    assert parse_key(out.strip()) is not None
    assert "disabled" in err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86400),
        ("12h", 43200),
        ("90m", 5400),
        ("3600s", 3600),
        ("2w", 1209600),
        ("1d12h", 129600),
        (" 5M ", 300),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)
