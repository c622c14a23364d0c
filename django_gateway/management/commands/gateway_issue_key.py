"""``manage.py gateway_issue_key CONSUMER [--name N] [--expires-in 30d]``: issue an API key.

The key alone goes to stdout, so ``KEY=$(manage.py gateway_issue_key alice)`` captures exactly
it; the prefix, the expiry and the reminder that it is not shown again go to stderr. Only the
key's hash is stored. A thin front end over :func:`django_gateway.operations.issue_key`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ...models import Consumer
from ...operations import issue_key

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\d{1,9}[wdhms])+")
_PART = re.compile(r"(\d+)([wdhms])")


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` or a sum such as ``1d12h``; more than zero."""
    text = text.strip().lower()
    if not _DURATION.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 90m or 3600s.")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    if seconds <= 0:
        raise ValueError("The duration must be longer than zero.")
    try:
        return timedelta(seconds=seconds)
    except OverflowError as exc:
        raise ValueError(f"{text!r} is too long a duration.") from exc


class Command(BaseCommand):
    help = (
        "Issue a new API key for a consumer (by username) and print it once: only its hash is "
        "stored. The key is printed alone on stdout; its prefix and expiry go to stderr."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("consumer", help="The consumer's username.")
        parser.add_argument("--name", default="", help="A label for the key, e.g. 'ci'.")
        parser.add_argument(
            "--expires-in",
            metavar="DURATION",
            help="Lifetime such as 30d, 12h, 90m or 3600s (default: never expires).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["consumer"]
        try:
            consumer = Consumer.objects.get(username=username)
        except Consumer.DoesNotExist:
            raise CommandError(f"No consumer with username {username!r}.") from None
        expires_at = None
        if options["expires_in"]:
            try:
                expires_at = timezone.now() + parse_duration(options["expires_in"])
            except (ValueError, OverflowError) as exc:
                raise CommandError(f"--expires-in: {exc}") from exc
        try:
            key, plaintext = issue_key(consumer, name=options["name"], expires_at=expires_at)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(plaintext)
        expiry = key.expires_at.isoformat(timespec="seconds") if key.expires_at else "never"
        self.stderr.write(
            f"Issued API key {key.prefix} for consumer {consumer.username}; expires: {expiry}.\n"
            "Store the key now: it is not shown again (only its hash is kept).",
            style_func=self.style.WARNING,
        )
        if not consumer.enabled:
            self.stderr.write(
                f"Consumer {consumer.username} is disabled: the key works once it is enabled.",
                style_func=self.style.WARNING,
            )
