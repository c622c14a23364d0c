"""Django admin for services, their targets, and routes."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from . import operations
from .forms import RouteForm
from .models import Route, Service, Target


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
        "priority",
        "enabled",
    )
    list_filter = ("enabled", "service", "strip_path", "preserve_host")
    list_select_related = ("service",)
    search_fields = ("name", "paths", "hosts", "service__name")
    autocomplete_fields = ("service",)
    fieldsets = (
        (None, {"fields": ("name", "service", "enabled")}),
        ("Matching", {"fields": ("paths", "hosts", "methods", "headers", "priority")}),
        ("Forwarding", {"fields": ("strip_path", "preserve_host")}),
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
