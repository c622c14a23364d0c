"""Routes: list columns, filters and search over what decides matching.

The list and the service page's route rows show a route's match conditions in one column, one
entry per line (as they are typed in), so both fit a 1280 px window next to the filters. The form
opens with what decides matching; the parts most routes leave alone (overrides, and the origin of
routes an operator created) come folded at the end.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..forms import RouteForm
from ..models import Route, Source
from .base import ADMIN_MEDIA, EnableDisableMixin, FitTextareas
from .limits import RouteLimitInline

OVERRIDES = (
    "connect_timeout",
    "read_timeout",
    "timeout",
    "max_response_duration",
    "max_body_size",
)
ORIGIN_DESCRIPTION = (
    "gateway_sync_services rewrites the paths, hosts, methods, priority, strip_path, "
    "preserve_host and enabled of routes imported from Consul tags on every run; tick operator "
    "override to keep this route exactly as it is here (an imported route you disable then "
    "stays disabled)."
)


def _lines(*groups: tuple[str, ...] | list[str]) -> SafeString:
    """Each entry on a line of its own, as the form takes them."""
    return format_html_join("", "<div>{}</div>", ((entry,) for group in groups for entry in group))


def match_conditions(route: Route, *, paths: bool = True) -> SafeString:
    """What a request needs to reach ``route``: paths, hosts, methods and headers, one per line."""
    headers = [f"{name}: {' | '.join(values)}" for name, values in (route.headers or {}).items()]
    return format_html(
        "{}{}{}{}",
        _lines(route.paths or ["/"]) if paths else "",
        _lines(route.hosts) if route.hosts else "",
        format_html("<div>{}</div>", " ".join(route.methods)) if route.methods else "",
        _lines(headers),
    )


class RouteAdminForm(FitTextareas, RouteForm):
    pass


@admin.register(Route)
class RouteAdmin(EnableDisableMixin, admin.ModelAdmin):
    form = RouteAdminForm
    list_display = ("name", "matches", "service", "priority", "enabled")
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
        ("Matching", {"fields": ("paths", "hosts", "methods", "headers", "priority")}),
        ("Forwarding", {"fields": ("strip_path", "preserve_host", "websocket")}),
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
                "fields": OVERRIDES,
                "description": "Empty fields use the service's values (body size: "
                "GATEWAY['MAX_BODY_SIZE']; response duration: no limit).",
            },
        ),
        (
            "Origin",
            {"fields": ("source", "operator_override"), "description": ORIGIN_DESCRIPTION},
        ),
    )

    class Media:
        css = ADMIN_MEDIA

    def get_fieldsets(self, request: HttpRequest, obj: Route | None = None) -> Any:
        """Overrides folded away while there are none; Origin too, unless the route was imported
        from Consul, and left out of the add form (Django unfolds a part holding an error)."""
        folded = {"Origin"} if obj is None or obj.source != Source.CONSUL else set()
        if obj is None or all(getattr(obj, name) is None for name in OVERRIDES):
            folded.add("Overrides")
        return [
            (title, {**options, "classes": ("collapse",)} if title in folded else options)
            for title, options in self.fieldsets
            if obj is not None or title != "Origin"
        ]

    @admin.display(description="paths, hosts, methods, headers")
    def matches(self, route: Route) -> SafeString:
        return match_conditions(route)
