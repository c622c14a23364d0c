"""Services with their static targets and their routes inline, the live-instance panel, and the
"Sync from Consul now" button of the service list.

The form shows the Consul fieldset and the hashing fields only when they apply; a small script
(``static/django_gateway/service_form.js``) hides and shows them as the choices change, so a
static round-robin service shows neither. The button shows only for users who can sync, and
only when some service comes from Consul or an agent address is configured.
"""

from __future__ import annotations

import copy
import os
import time
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import operations
from ..conf import gateway_settings
from ..discovery import describe
from ..forms import RouteForm, ServiceForm
from ..models import Discovery, Route, Service, Target
from ..runtime import runtime
from .base import ADMIN_MEDIA, EnableDisableMixin, FitTextareas
from .limits import ServiceLimitInline
from .routes import match_conditions

#: Targets the service list shows before "and N more".
LISTED_TARGETS = 3


class TargetInline(admin.TabularInline):
    model = Target
    extra = 1
    fields = ("host", "port", "weight", "enabled")


def _row_paths() -> forms.Field:
    """The route form's paths field (same parsing, same messages) in a narrower box."""
    field = copy.deepcopy(RouteForm.base_fields["paths"])
    field.widget.attrs.update(rows=1, cols=30)
    return field


class RouteRowForm(FitTextareas, forms.ModelForm):
    """A route as a row of its service's page: name, paths, priority and enabled. Hosts,
    methods, headers and everything else are edited on the route's own form, linked from the row
    (and kept as they are here: this form has no field for them)."""

    paths = _row_paths()

    class Meta:
        model = Route
        fields = ("name", "paths", "priority", "enabled")


class RouteInline(admin.TabularInline):
    model = Route
    form = RouteRowForm
    extra = 0
    fields = ("name", "paths", "also_matches", "priority", "enabled")
    readonly_fields = ("also_matches",)
    show_change_link = True

    @admin.display(description="hosts, methods, headers")
    def also_matches(self, route: Route) -> SafeString | str:
        return match_conditions(route, paths=False) or "any host, any method"


#: The fieldsets the service form's script shows only when they apply (service_form.js).
CONSUL_FIELDSET = "gateway-consul"


class ServiceAdminForm(FitTextareas, ServiceForm):
    pass


@admin.register(Service)
class ServiceAdmin(EnableDisableMixin, admin.ModelAdmin):
    form = ServiceAdminForm
    change_list_template = "admin/django_gateway/service/change_list.html"
    list_display = ("name", "protocol", "path", "target_list", "enabled")
    list_filter = ("enabled", "protocol", "discovery", "source")
    search_fields = ("name", "targets__host", "consul_service")
    inlines = [TargetInline, RouteInline, ServiceLimitInline]
    readonly_fields = ("source", "live_instances")
    fieldsets = (
        (None, {"fields": ("name", "protocol", "path", "enabled", "source")}),
        (
            "Discovery",
            {
                "fields": ("discovery",),
                "description": "Static services use the targets below; Consul services ask "
                "Consul's health API for passing instances.",
            },
        ),
        (
            "Consul",
            {
                "fields": (
                    "consul_service",
                    "consul_tags",
                    "consul_datacenter",
                    "consul_include_warning",
                ),
                "classes": (CONSUL_FIELDSET,),
            },
        ),
        ("Live instances", {"fields": ("live_instances",)}),
        (
            "Load balancing",
            {"fields": ("load_balancing", "hash_on", "hash_on_header", "hash_on_cookie")},
        ),
        (
            "Timeouts and retries",
            {"fields": ("connect_timeout", "read_timeout", "timeout", "retries")},
        ),
        (
            "Isolation",
            {
                "fields": ("max_concurrent_requests",),
                "description": "A slow service must not hold every worker (WSGI) or socket "
                "(ASGI): past this many requests in flight in one gateway process, the next "
                "ones get 503 with Retry-After at once.",
            },
        ),
        ("TLS", {"fields": ("tls_verify",)}),
    )

    class Media:
        css = ADMIN_MEDIA
        js = ("django_gateway/service_form.js",)

    def get_fieldsets(self, request: HttpRequest, obj: Service | None = None) -> Any:
        """No source and no live instances before the service exists."""
        if obj is not None:
            return self.fieldsets
        (title, first), *others = self.fieldsets
        fields = tuple(name for name in first["fields"] if name != "source")
        return [(title, {**first, "fields": fields})] + [
            fieldset for fieldset in others if fieldset[0] != "Live instances"
        ]

    @admin.display(description="targets")
    def target_list(self, service: Service) -> SafeString | str:
        if service.discovery == "consul":
            return f"Consul: {service.consul_service or service.name}"
        targets = [str(t) for t in service.targets.all() if t.enabled]
        if len(targets) > LISTED_TARGETS:
            more = len(targets) - LISTED_TARGETS + 1
            targets = [*targets[: LISTED_TARGETS - 1], f"and {more} more"]
        return format_html_join("", "<div>{}</div>", ((t,) for t in targets)) or "-"

    @admin.display(description="live instances")
    def live_instances(self, service: Service) -> SafeString | str:
        """What this process balances over now: Consul's answer (with its index and age) or the
        static targets, each marked ejected or not by passive health checks."""
        if service.pk is None:  # the add page; django-stubs types pk as never None
            return "-"  # type: ignore[unreachable]
        if not service.enabled:
            return "Disabled: the gateway does not route to this service."
        config = runtime.snapshots.get().services.get(service.name)
        if config is None:
            return "Not in this process's configuration yet; reload in a moment."
        state = describe(config, runtime.watchers)
        if service.discovery == "consul":
            lines = [
                f"Consul index {state.index or '-'}, last answer {_age(state.updated_at)}.",
                f"Consul fails: {state.error}" if state.error else "",
                "Stale: older than CONSUL_MAX_STALE, requests get 503." if state.stale else "",
            ]
            status = "passing or warning" if service.consul_include_warning else "passing"
            rows = [(i.host, i.port, i.weight, status, i) for i in state.instances]
        else:
            lines = ["Static targets (enabled, weight above 0)."]
            rows = [(i.host, i.port, i.weight, "configured", i) for i in state.instances]
        if config.max_concurrent_requests is not None:
            lines.append(
                f"Requests in flight in this process: {runtime.gates.in_flight(service.name)} "
                f"of {config.max_concurrent_requests} (max_concurrent_requests)."
            )
        head = format_html_join("", "<p>{}</p>", ((line,) for line in lines if line))
        if not rows:
            return format_html(
                "{}<p><strong>No instance available: requests get 503.</strong></p>", head
            )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (host, port, weight, status, _ejected(service.name, instance))
                for host, port, weight, status, instance in rows
            ),
        )
        return format_html(
            "{}<table><thead><tr><th>address</th><th>port</th><th>weight</th><th>health</th>"
            "<th>passive health</th></tr></thead><tbody>{}</tbody></table>",
            head,
            body,
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Service]:
        return super().get_queryset(request).prefetch_related("targets")

    # --- "Sync from Consul now" ----------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        sync = path(
            "sync-from-consul/",
            self.admin_site.admin_view(self.sync_from_consul_view),
            name="django_gateway_service_sync_from_consul",
        )
        return [sync, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        show_sync = self._can_sync(request) and _uses_consul()
        extra_context = {**(extra_context or {}), "can_sync": show_sync}
        return super().changelist_view(request, extra_context)

    def _can_sync(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def sync_from_consul_view(self, request: HttpRequest) -> HttpResponse:
        """Run ``gateway_sync_services`` (without ``--prune``) and report its summary."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self._can_sync(request):
            raise PermissionDenied
        try:
            plan = operations.sync_from_consul()
        except operations.ConsulSyncError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"Sync from Consul: {plan.summary()}", messages.SUCCESS)
            reported = [str(p) for p in plan.problems]
            if reported:
                shown = "; ".join(reported[:10]) + ("; ..." if len(reported) > 10 else "")
                self.message_user(request, f"Reported: {shown}", messages.WARNING)
        return redirect("admin:django_gateway_service_changelist")


def _uses_consul() -> bool:
    """Whether the sync button makes sense: some service already comes from Consul, or an agent
    address is configured (a first import, before any Consul service exists)."""
    configured = gateway_settings.CONSUL_ADDRESS or os.environ.get("CONSUL_HTTP_ADDR")
    return bool(configured) or Service.objects.filter(discovery=Discovery.CONSUL).exists()


def _age(updated_at: float | None) -> str:
    if updated_at is None:
        return "not received yet"
    stamp = timezone.localtime(datetime.fromtimestamp(updated_at, tz=UTC))
    return f"at {stamp:%Y-%m-%d %H:%M:%S %Z} ({max(0, time.time() - updated_at):.0f} s ago)"


def _ejected(service: str, instance: Any) -> str:
    return (
        "ejected"
        if runtime.ejections.is_ejected((service, instance.host, instance.port))
        else "in rotation"
    )
