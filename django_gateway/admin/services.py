"""Services with their static targets and their routes inline."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ..forms import RouteForm
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
    list_display = ("name", "protocol", "path", "target_list", "retries", "enabled")
    list_filter = ("enabled", "protocol")
    search_fields = ("name", "targets__host")
    inlines = [TargetInline, RouteInline, ServiceLimitInline]
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
