"""API keys by prefix: filters for revoked and expired keys, revocation as an action."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .. import operations
from ..models import APIKey
from .consumers import KEY_FIELDS


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(revoked_at__isnull=self.value() == "no")
        return queryset


class ExpiredFilter(admin.SimpleListFilter):
    title = "expired"
    parameter_name = "expired"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        expired = Q(expires_at__lte=timezone.now())
        if self.value() == "yes":
            return queryset.filter(expired)
        if self.value() == "no":
            return queryset.exclude(expired)
        return queryset


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    """Keys by prefix; only ``name`` and ``expires_at`` can change, revocation is an action."""

    list_display = ("prefix", "name", "consumer", *KEY_FIELDS[2:], "status")
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # issued from the consumer list ("Issue a new API key")

    @admin.display(description="status")
    def status(self, key: APIKey) -> str:
        if key.revoked_at is not None:
            return "revoked"
        if key.expires_at is not None and key.expires_at <= timezone.now():
            return "expired"
        return "active"

    @admin.action(description="Revoke selected keys")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = operations.revoke_keys(queryset)
        self.message_user(
            request,
            f"Revoked {count} key(s); every gateway process refuses them within "
            "CONFIG_POLL_INTERVAL.",
            messages.SUCCESS,
        )
