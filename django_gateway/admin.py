"""Django admin for services, their targets, routes, consumers and their credentials.

API keys cannot be typed in: the "Issue a new API key" action on consumers creates one and shows
its plaintext once, in a message; every page after that shows only the prefix.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from . import operations
from .forms import ConsumerForm, RouteForm
from .models import APIKey, Consumer, JWTCredential, Route, Service, Target


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


class TargetInline(admin.TabularInline):
    model = Target
    extra = 1
    fields = ("host", "port", "weight", "enabled")


class RouteInline(admin.TabularInline):
    model = Route
    form = RouteForm
    extra = 0
    fields = ("name", "paths", "hosts", "methods", "priority", "enabled")
    show_change_link = True


@admin.register(Service)
class ServiceAdmin(EnableDisableMixin, admin.ModelAdmin):
    list_display = ("name", "protocol", "path", "target_list", "retries", "enabled")
    list_filter = ("enabled", "protocol")
    search_fields = ("name", "targets__host")
    inlines = [TargetInline]
    fieldsets = (
        (None, {"fields": ("name", "protocol", "path", "enabled")}),
        (
            "Timeouts and retries",
            {"fields": ("connect_timeout", "read_timeout", "timeout", "retries")},
        ),
        ("TLS", {"fields": ("tls_verify",)}),
    )

    @admin.display(description="targets")
    def target_list(self, service: Service) -> str:
        return ", ".join(str(t) for t in service.targets.all() if t.enabled) or "-"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("targets")


@admin.register(Route)
class RouteAdmin(EnableDisableMixin, admin.ModelAdmin):
    form = RouteForm
    list_display = (
        "name",
        "path_list",
        "host_list",
        "method_list",
        "service",
        "authentication",
        "priority",
        "enabled",
    )
    list_filter = ("enabled", "service", "authentication", "strip_path", "preserve_host")
    list_select_related = ("service",)
    search_fields = ("name", "paths", "hosts", "service__name")
    autocomplete_fields = ("service", "anonymous_consumer")
    fieldsets = (
        (None, {"fields": ("name", "service", "enabled")}),
        ("Matching", {"fields": ("paths", "hosts", "methods", "headers", "priority")}),
        ("Forwarding", {"fields": ("strip_path", "preserve_host")}),
        (
            "Authentication and access",
            {
                "fields": (
                    "authentication",
                    "anonymous_consumer",
                    "hide_credentials",
                    "allowed_groups",
                    "denied_groups",
                    "allowed_ips",
                    "denied_ips",
                ),
            },
        ),
        (
            "Overrides",
            {
                "fields": ("connect_timeout", "read_timeout", "timeout", "max_body_size"),
                "description": "Empty fields use the service's values (body size: GATEWAY['MAX_BODY_SIZE']).",
            },
        ),
    )

    @admin.display(description="paths")
    def path_list(self, route: Route) -> str:
        return ", ".join(route.paths) or "/"

    @admin.display(description="hosts")
    def host_list(self, route: Route) -> str:
        return ", ".join(route.hosts) or "any"

    @admin.display(description="methods")
    def method_list(self, route: Route) -> str:
        return ", ".join(route.methods) or "any"


# --- Consumers and credentials ----------------------------------------------------------------

KEY_FIELDS = ("prefix", "name", "created_at", "expires_at", "revoked_at", "last_used_at")


class APIKeyInline(admin.TabularInline):
    """The consumer's keys, read-only: keys are issued by the action, never typed in."""

    model = APIKey
    fields = KEY_FIELDS
    readonly_fields = KEY_FIELDS
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


@admin.register(Consumer)
class ConsumerAdmin(EnableDisableMixin, admin.ModelAdmin):
    form = ConsumerForm
    list_display = ("username", "custom_id", "group_list", "enabled", "key_count")
    list_filter = ("enabled",)
    search_fields = ("username", "custom_id", "groups")
    inlines = [APIKeyInline, JWTCredentialInline]
    actions = ["issue_api_key", "enable_selected", "disable_selected"]
    fields = ("username", "custom_id", "user", "groups", "enabled")
    raw_id_fields = ("user",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        active = Q(api_keys__revoked_at__isnull=True)
        return super().get_queryset(request).annotate(_key_count=Count("api_keys", filter=active))

    @admin.display(description="groups")
    def group_list(self, consumer: Consumer) -> str:
        return ", ".join(consumer.groups or ()) or "-"

    @admin.display(description="API keys", ordering="_key_count")
    def key_count(self, consumer: Consumer) -> int:
        return getattr(consumer, "_key_count", 0)  # keys not revoked

    @admin.action(description="Issue a new API key")
    def issue_api_key(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse:
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
