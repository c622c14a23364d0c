"""Signal wiring: configuration saves bump the shared version once their transaction commits."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from .models import APIKey, Consumer, JWTCredential, RateLimit, Route, Service, Target
from .revision import bump_revision


def _changed(sender: type, **kwargs: Any) -> None:
    transaction.on_commit(bump_revision, robust=True)


def connect() -> None:
    for model in (Service, Target, Route, Consumer, APIKey, JWTCredential, RateLimit):
        uid = f"django_gateway.version.{model.__name__}"
        post_save.connect(_changed, sender=model, dispatch_uid=uid + ".save")
        post_delete.connect(_changed, sender=model, dispatch_uid=uid + ".delete")
