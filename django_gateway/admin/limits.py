"""Rate limits: inline on routes, services and consumers, and a list of their own for global ones.

The inline rows keep what a limit needs to be valid (the header name included) and leave the
rest (fault tolerance) to the limit's own page, linked from each row, so a row fits a 1280 px
window. The consumer page shows the consumer's live quota read from Redis
(:mod:`..throttling.quota`) and the consumer list has an action that resets their counters. The
rate-limit pages warn while limits are counted per process (no django-redis cache).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.forms import TypedChoiceField
from django.http import HttpRequest
from django.utils.html import format_html

from ..models import LimitBy, Period, RateLimit
from ..runtime import runtime
from ..throttling.engine import cache_alias
from ..throttling.local_limiter import LocalLimiter
from .base import ADMIN_MEDIA, CompactInline, EnableDisableMixin

#: The short names rows show; the long labels (with their fallbacks) are on the limit's page.
SHORT_PERIODS = [(period, period.value) for period in Period]
PERIOD_HELP = "A month is 30 days."
SHORT_LIMIT_BY: list[tuple[str, str]] = [
    (LimitBy.CONSUMER, "consumer"),
    (LimitBy.CREDENTIAL, "credential"),
    (LimitBy.IP, "client IP"),
    (LimitBy.HEADER, "header"),
]
LIMIT_BY_HELP = (
    "Consumer and credential count the client IP for anonymous requests, header counts it when "
    "the header is absent; IPv6 clients are counted by /64."
)


class _LimitInline(CompactInline):
    model = RateLimit  # fault tolerance is set on the limit's own page, linked from each row

    def formfield_for_choice_field(
        self, db_field: models.Field[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> TypedChoiceField | None:
        if db_field.name == "limit_by":
            kwargs.update(choices=SHORT_LIMIT_BY, help_text=LIMIT_BY_HELP)
        elif db_field.name == "period":
            kwargs.update(choices=SHORT_PERIODS, help_text=PERIOD_HELP)
        return super().formfield_for_choice_field(db_field, request, **kwargs)


class RouteLimitInline(_LimitInline):
    fk_name = "route"
    fields = ("limit", "period", "limit_by", "header_name", "consumer", "enabled")
    autocomplete_fields = ("consumer",)
    verbose_name_plural = "rate limits on this route"


class ServiceLimitInline(_LimitInline):
    fk_name = "service"
    fields = ("limit", "period", "limit_by", "header_name", "consumer", "enabled")
    autocomplete_fields = ("consumer",)
    verbose_name_plural = "rate limits shared by every route of this service"


class ConsumerLimitInline(_LimitInline):
    """Plans: the consumer's own limits, replacing the general ones of the same scope and period."""

    fk_name = "consumer"
    fields = ("limit", "period", "limit_by", "header_name", "route", "service", "enabled")
    autocomplete_fields = ("route", "service")
    verbose_name_plural = "plan: this consumer's own rate limits"


@admin.register(RateLimit)
class RateLimitAdmin(EnableDisableMixin, admin.ModelAdmin):
    list_display = ("rate", "counted_by", "scope", "consumer", "fault_tolerant", "enabled")
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

    class Media:
        css = ADMIN_MEDIA

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        self._warn_if_counted_per_process(request)
        return super().changelist_view(request, extra_context)

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        self._warn_if_counted_per_process(request)
        return super().changeform_view(request, *args, **kwargs)

    def _warn_if_counted_per_process(self, request: HttpRequest) -> None:
        if request.method == "GET" and isinstance(runtime.limiter, LocalLimiter):
            self.message_user(
                request,
                f"Rate limits are counted in each process's memory: the cache {cache_alias()!r} "
                "is not a django-redis cache, so N gateway processes admit up to N times each "
                "limit (check django_gateway.W002).",
                messages.WARNING,
            )

    @admin.display(description="limit", ordering="limit")
    def rate(self, limit: RateLimit) -> str:
        return f"{limit.limit}/{limit.period}"

    @admin.display(description="counted by", ordering="limit_by")
    def counted_by(self, limit: RateLimit) -> str:
        if limit.limit_by == LimitBy.HEADER:
            return format_html("header <code>{}</code>", limit.header_name)
        return dict(SHORT_LIMIT_BY).get(limit.limit_by, limit.limit_by)

    @admin.display(description="applies to")
    def scope(self, limit: RateLimit) -> str:
        return limit.scope_label
