"""Routes: list columns, filters and search over what decides matching."""

from __future__ import annotations

from django.contrib import admin

from ..forms import RouteForm
from ..models import Route
from .base import EnableDisableMixin
from .limits import RouteLimitInline


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
    list_filter = (
        "enabled",
        "service",
        "authentication",
        "strip_path",
        "preserve_host",
        "source",
        "operator_override",
    )
    list_select_related = ("service",)
    search_fields = ("name", "paths", "hosts", "service__name")
    autocomplete_fields = ("service", "anonymous_consumer")
    inlines = [RouteLimitInline]
    readonly_fields = ("source",)
    fieldsets = (
        (None, {"fields": ("name", "service", "enabled")}),
        (
            "Origin",
            {
                "fields": ("source", "operator_override"),
                "description": "gateway_sync_services rewrites the paths, hosts, methods, priority, "
                "strip_path, preserve_host and enabled of routes imported from Consul tags on every "
                "run; tick operator override to keep this route exactly as it is here (an "
                "imported route you disable then stays disabled).",
            },
        ),
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
