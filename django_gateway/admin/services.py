"""Services with their static targets and their routes inline, the live-instance panel, and the
"Sync from Consul now" button of the service list."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..discovery.watcher import describe_error
from ..forms import RouteForm, ServiceForm
from ..health import health
from ..models import Route, Service, Target
from .base import EnableDisableMixin
from .limits import ServiceLimitInline


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
    form = ServiceForm
    change_list_template = "admin/django_gateway/service/change_list.html"
    list_display = (
        "name",
        "protocol",
        "path",
        "discovery",
        "target_list",
        "retries",
        "source",
        "enabled",
    )
    list_filter = ("enabled", "protocol", "discovery", "source")
    search_fields = ("name", "targets__host", "consul_service")
    inlines = [TargetInline, RouteInline, ServiceLimitInline]
    readonly_fields = ("source", "live_instances")
    fieldsets = (
        (None, {"fields": ("name", "protocol", "path", "enabled", "source")}),
        (
            "Discovery",
            {
                "fields": (
                    "discovery",
                    "consul_service",
                    "consul_tags",
                    "consul_datacenter",
                    "consul_include_warning",
                    "live_instances",
                ),
                "description": "Static services use the targets below; Consul services ask "
                "Consul's health API for passing instances.",
            },
        ),
        (
            "Load balancing",
            {"fields": ("load_balancing", "hash_on", "hash_on_header", "hash_on_cookie")},
        ),
        (
            "Timeouts and retries",
            {"fields": ("connect_timeout", "read_timeout", "timeout", "retries")},
        ),
        ("TLS", {"fields": ("tls_verify",)}),
    )

    @admin.display(description="targets")
    def target_list(self, service: Service) -> str:
        if service.discovery == "consul":
            return f"Consul: {service.consul_service or service.name}"
        return ", ".join(str(t) for t in service.targets.all() if t.enabled) or "-"

    @admin.display(description="live instances")
    def live_instances(self, service: Service) -> SafeString | str:
        """What this process balances over now: Consul's answer (with its index and age) or the
        static targets, each marked ejected or not by passive health checks."""
        if service.pk is None:
            return "-"
        if not service.enabled:
            return "Disabled: the gateway does not route to this service."
        from ..discovery import describe
        from ..snapshot import get_snapshot

        config = get_snapshot().services.get(service.name)
        if config is None:
            return "Not in this process's configuration yet; reload in a moment."
        state = describe(config)
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

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("targets")

    # --- "Sync from Consul now" ----------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        sync = path(
            "sync-from-consul/",
            self.admin_site.admin_view(self.sync_from_consul_view),
            name="django_gateway_service_sync_from_consul",
        )
        return [sync, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        extra_context = {**(extra_context or {}), "can_sync": self._can_sync(request)}
        return super().changelist_view(request, extra_context)

    def _can_sync(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def sync_from_consul_view(self, request: HttpRequest) -> HttpResponse:
        """Run ``gateway_sync_services`` (without ``--prune``) and report its summary."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self._can_sync(request):
            raise PermissionDenied
        from ..discovery.sync import sync_services

        try:
            plan = sync_services()
        except Exception as exc:
            self.message_user(
                request, f"Sync from Consul failed: {describe_error(exc)}", messages.ERROR
            )
        else:
            self.message_user(request, f"Sync from Consul: {plan.summary()}", messages.SUCCESS)
            reported = [str(p) for p in plan.problems]
            if reported:
                shown = "; ".join(reported[:10]) + ("; ..." if len(reported) > 10 else "")
                self.message_user(request, f"Reported: {shown}", messages.WARNING)
        return redirect("admin:django_gateway_service_changelist")


def _age(updated_at: float | None) -> str:
    if updated_at is None:
        return "not received yet"
    stamp = timezone.localtime(datetime.fromtimestamp(updated_at, tz=UTC))
    return f"at {stamp:%Y-%m-%d %H:%M:%S %Z} ({max(0, time.time() - updated_at):.0f} s ago)"


def _ejected(service: str, instance: Any) -> str:
    return (
        "ejected" if health.is_ejected((service, instance.host, instance.port)) else "in rotation"
    )
