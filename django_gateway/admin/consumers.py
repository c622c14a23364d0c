"""Consumers with their credentials; API keys are issued by an action and shown once.

API keys cannot be typed in: the "Issue a new API key" action creates one per selected consumer
and shows its plaintext once, on a never-cached page; every page after that shows only the prefix.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db import models
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join

from .. import operations
from ..forms import ConsumerForm
from ..models import APIKey, Consumer, JWTCredential
from ..throttling.base import LimiterUnavailable
from ..throttling.quota import consumer_quota, reset_consumer_counters
from .base import ADMIN_MEDIA, EnableDisableMixin, FitTextareas
from .keys import KEY_COLUMNS, KeyColumns
from .limits import ConsumerLimitInline


class APIKeyInline(KeyColumns, admin.TabularInline):
    """The consumer's keys, read-only: keys are issued by the action, never typed in."""

    model = APIKey
    fields = KEY_COLUMNS
    readonly_fields = KEY_COLUMNS
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class JWTCredentialInline(admin.StackedInline):
    model = JWTCredential
    extra = 0
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # JWKS over TLS
    fields = ("key", "algorithm", "secret", "public_key", "jwks_url", "audience")


class ConsumerAdminForm(FitTextareas, ConsumerForm):
    pass


@admin.register(Consumer)
class ConsumerAdmin(EnableDisableMixin, admin.ModelAdmin):
    form = ConsumerAdminForm
    list_display = ("username", "custom_id", "group_list", "enabled", "key_count")
    list_filter = ("enabled",)
    search_fields = ("username", "custom_id", "groups")
    inlines = [APIKeyInline, JWTCredentialInline, ConsumerLimitInline]
    actions = ["issue_api_key", "reset_rate_limits", "enable_selected", "disable_selected"]
    fields = ("username", "custom_id", "user", "groups", "enabled", "rate_limit_quota")
    readonly_fields = ("rate_limit_quota",)
    raw_id_fields = ("user",)

    class Media:
        css = ADMIN_MEDIA

    def get_queryset(self, request: HttpRequest) -> QuerySet[Consumer]:
        active = Q(api_keys__revoked_at__isnull=True)
        consumers: QuerySet[Consumer] = super().get_queryset(request)
        return consumers.annotate(_key_count=Count("api_keys", filter=active))

    @admin.display(description="groups")
    def group_list(self, consumer: Consumer) -> str:
        return ", ".join(consumer.groups or ()) or "-"

    @admin.display(description="API keys", ordering="_key_count")
    def key_count(self, consumer: Consumer) -> int:
        return getattr(consumer, "_key_count", 0)  # keys not revoked

    def has_issue_key_permission(self, request: HttpRequest) -> bool:
        """Issuing creates API keys: the key model's add permission (keys have no add page)."""
        codename = get_permission_codename("add", APIKey._meta)
        return request.user.has_perm(f"{APIKey._meta.app_label}.{codename}")

    @admin.action(description="Issue a new API key", permissions=["issue_key"])
    def issue_api_key(self, request: HttpRequest, queryset: QuerySet[Consumer]) -> TemplateResponse:
        """One key per selected consumer, shown on the page this action returns and nowhere else.

        Not through the messages framework: that would park the key in a cookie or the session
        store until the next page. The page is marked never-cache so the browser keeps no copy.
        """
        issued = [(consumer, *operations.issue_key(consumer)) for consumer in queryset]
        response = TemplateResponse(
            request,
            "admin/django_gateway/consumer/issued_keys.html",
            {
                **self.admin_site.each_context(request),
                "title": "New API keys",
                "opts": self.model._meta,
                "issued": issued,
                "consumers_url": reverse("admin:django_gateway_consumer_changelist"),
            },
        )
        add_never_cache_headers(response)
        return response

    @admin.display(description="rate-limit quota (live)")
    def rate_limit_quota(self, consumer: Consumer) -> str:
        """What each of the consumer's counters has left right now, read from Redis."""
        if consumer.pk is None:  # the add page; django-stubs types pk as never None
            return "-"  # type: ignore[unreachable]
        rows, error = consumer_quota(consumer)
        if not rows:
            return "No rate limit counts this consumer (limits by IP or header count clients)."
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    row.limit,
                    row.counted,
                    "?" if row.remaining is None else f"{row.remaining} of {row.limit.limit}",
                    "?" if row.reset is None else f"{row.reset} s",
                )
                for row in rows
            ),
        )
        note = format_html("<p>Redis cannot be read: {}</p>", error) if error else ""
        return format_html(
            "<table><thead><tr><th>limit</th><th>counted</th><th>remaining</th>"
            "<th>next slot frees in</th></tr></thead><tbody>{}</tbody></table>{}",
            body,
            note,
        )

    @admin.action(description="Reset rate-limit counters", permissions=["change"])
    def reset_rate_limits(self, request: HttpRequest, queryset: QuerySet[Consumer]) -> None:
        try:
            cleared = sum(reset_consumer_counters(consumer) for consumer in queryset)
        except LimiterUnavailable as exc:
            self.message_user(request, f"Counters not reset: {exc}", messages.ERROR)
            return
        self.message_user(
            request,
            f"Reset {cleared} counter(s) of {queryset.count()} consumer(s).",
            messages.SUCCESS,
        )
