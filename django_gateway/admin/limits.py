"""Rate limits: inline on routes, services and consumers, and a list of their own for global ones.

The consumer page shows the consumer's live quota read from Redis (:mod:`..throttling.quota`)
and the consumer list has an action that resets their counters.
"""

from __future__ import annotations

from django.contrib import admin

from ..models import RateLimit
from .base import EnableDisableMixin

LIMIT_FIELDS = ("limit", "period", "limit_by", "header_name", "fault_tolerant", "enabled")


class _LimitInline(admin.TabularInline):
    model = RateLimit
    extra = 0
    show_change_link = True


class RouteLimitInline(_LimitInline):
    fk_name = "route"
    fields = (*LIMIT_FIELDS, "consumer")
    autocomplete_fields = ("consumer",)
    verbose_name_plural = "rate limits on this route"


class ServiceLimitInline(_LimitInline):
    fk_name = "service"
    fields = (*LIMIT_FIELDS, "consumer")
    autocomplete_fields = ("consumer",)
    verbose_name_plural = "rate limits shared by every route of this service"


class ConsumerLimitInline(_LimitInline):
    """Plans: the consumer's own limits, replacing the general ones of the same scope and period."""

    fk_name = "consumer"
    fields = ("route", "service", *LIMIT_FIELDS)
    autocomplete_fields = ("route", "service")
    verbose_name_plural = "plan: this consumer's own rate limits"


@admin.register(RateLimit)
class RateLimitAdmin(EnableDisableMixin, admin.ModelAdmin):
    list_display = (
        "__str__",
        "limit",
        "period",
        "limit_by",
        "scope",
        "consumer",
        "fault_tolerant",
        "enabled",
    )
    list_filter = ("enabled", "period", "limit_by", "fault_tolerant")
    list_select_related = ("route", "service", "consumer")
    search_fields = ("route__name", "service__name", "consumer__username")
    autocomplete_fields = ("route", "service", "consumer")
    fieldsets = (
        (None, {"fields": ("limit", "period", "limit_by", "header_name", "enabled")}),
        (
            "Applies to",
            {
                "fields": ("route", "service", "consumer"),
                "description": "A route, or a service (all its routes together), or neither: "
                "every route. With a consumer, only that consumer, replacing the general limit "
                "of the same scope and period.",
            },
        ),
        ("When Redis is unreachable", {"fields": ("fault_tolerant",)}),
    )

    @admin.display(description="scope")
    def scope(self, limit: RateLimit) -> str:
        return limit.scope_label
