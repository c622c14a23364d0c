"""What every gateway admin shares: bulk enable/disable through the operations layer, the
stylesheet that fits the gateway's pages into a 1280 px window, text boxes as tall as the list
they hold, and inline rows without the related-object icons."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from .. import operations

#: ``Media.css`` of every gateway admin: column widths for inline rows and list cells.
ADMIN_MEDIA = {"all": ("django_gateway/admin.css",)}


class EnableDisableMixin(admin.ModelAdmin):
    """Bulk enable and disable, for users who may change the rows (not those who only view)."""

    actions = ["enable_selected", "disable_selected"]

    @admin.action(description="Enable selected %(verbose_name_plural)s", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        count = operations.set_enabled(queryset, True)
        self.message_user(request, f"Enabled {count}.", messages.SUCCESS)

    @admin.action(description="Disable selected %(verbose_name_plural)s", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        count = operations.set_enabled(queryset, False)
        self.message_user(request, f"Disabled {count}.", messages.SUCCESS)


class FitTextareas(forms.BaseForm):
    """A form mixin: each text box shows every line it holds, plus an empty one for the next
    entry (between ``rows`` of the widget and ``MAX_ROWS``), instead of a scroll bar."""

    MAX_ROWS = 15

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if isinstance(field.widget, forms.Textarea):
                text = str(field.prepare_value(self[name].value()) or "")
                rows = int(field.widget.attrs.get("rows", 2))
                lines = text.count("\n") + 2 if text else rows
                field.widget.attrs["rows"] = min(max(rows, lines), self.MAX_ROWS)


class CompactInline(admin.TabularInline):
    """A tabular inline whose related-object selects have no edit/add/view icons: they wrap
    under the select and make the row wider; the row's own page (linked) has them."""

    extra = 0
    show_change_link = True

    def formfield_for_dbfield(
        self, db_field: models.Field[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if formfield is not None and isinstance(formfield.widget, RelatedFieldWidgetWrapper):
            widget = formfield.widget
            widget.can_add_related = widget.can_change_related = False
            widget.can_view_related = widget.can_delete_related = False
        return formfield
