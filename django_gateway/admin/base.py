"""What every gateway admin shares: bulk enable/disable through the operations layer."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .. import operations


class EnableDisableMixin:
    actions = ["enable_selected", "disable_selected"]

    @admin.action(description="Enable selected %(verbose_name_plural)s")
    def enable_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = operations.set_enabled(queryset, True)
        self.message_user(request, f"Enabled {count}.", messages.SUCCESS)  # type: ignore[attr-defined]

    @admin.action(description="Disable selected %(verbose_name_plural)s")
    def disable_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = operations.set_enabled(queryset, False)
        self.message_user(request, f"Disabled {count}.", messages.SUCCESS)  # type: ignore[attr-defined]
