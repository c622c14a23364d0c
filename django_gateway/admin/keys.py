"""API keys by prefix: filters for revoked and expired keys, revocation as an action.

The list and the consumer page's key rows show the same five columns (prefix, name, created,
last used, and a status that carries the expiry or revocation date), dates without their time.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.formats import date_format

from .. import operations
from ..models import APIKey
from .base import ADMIN_MEDIA

#: What a row shows of a key, on the key list and on its consumer's page.
KEY_COLUMNS = ("prefix", "name", "created", "last_used", "status")


def _day(moment: Any) -> str:
    return date_format(timezone.localtime(moment), "DATE_FORMAT")


class KeyColumns:
    """The computed columns of :data:`KEY_COLUMNS`, for the key list and the key inline."""

    @admin.display(description="created", ordering="created_at")
    def created(self, key: APIKey) -> str:
        # None until saved, which django-stubs does not model.
        return _day(key.created_at) if key.created_at else "-"  # type: ignore[truthy-bool]

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, key: APIKey) -> str:
        return _day(key.last_used_at) if key.last_used_at else "never"

    @admin.display(description="status")
    def status(self, key: APIKey) -> str:
        if key.revoked_at is not None:
            return f"revoked {_day(key.revoked_at)}"
        if key.expires_at is None:
            return "active" if key.pk else "-"
        if key.expires_at <= timezone.now():
            return f"expired {_day(key.expires_at)}"
        return f"active until {_day(key.expires_at)}"


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> QuerySet[APIKey]:
        if self.value() in ("yes", "no"):
            return queryset.filter(revoked_at__isnull=self.value() == "no")
        return queryset


class ExpiredFilter(admin.SimpleListFilter):
    title = "expired"
    parameter_name = "expired"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> QuerySet[APIKey]:
        expired = Q(expires_at__lte=timezone.now())
        if self.value() == "yes":
            return queryset.filter(expired)
        if self.value() == "no":
            return queryset.exclude(expired)
        return queryset


@admin.register(APIKey)
class APIKeyAdmin(KeyColumns, admin.ModelAdmin):
    """Keys by prefix; only ``name`` and ``expires_at`` can change, revocation is an action."""

    # Five columns fit a 1280 px window with room to spare whatever letters a prefix draws; the
    # day a key was created is on its page (the list stays ordered newest first per consumer).
    list_display = ("prefix", "name", "consumer", "last_used", "status")
    list_filter = (RevokedFilter, ExpiredFilter)
    list_select_related = ("consumer",)
    search_fields = ("prefix", "name", "consumer__username", "consumer__custom_id")
    fields = (
        "prefix",
        "consumer",
        "name",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    readonly_fields = ("prefix", "consumer", "created_at", "revoked_at", "last_used_at")
    actions = ["revoke_selected"]

    class Media:
        css = ADMIN_MEDIA

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # issued from the consumer list ("Issue a new API key")

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        count = operations.revoke_keys(queryset)
        self.message_user(
            request,
            f"Revoked {count} key(s); every gateway process refuses them within "
            "CONFIG_POLL_INTERVAL.",
            messages.SUCCESS,
        )
