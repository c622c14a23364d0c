"""Admin form fields that edit the routes' JSON lists as plain text, one entry per line."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from .models import Route, validation


class LinesField(forms.CharField):
    """A list of strings shown as one item per line; with ``commas=True`` commas separate too
    (not for paths, where a regex like ``~/x/\\d{1,3}`` holds a comma)."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def __init__(self, *, commas: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commas = commas

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list):
            return value
        text = super().to_python(value) or ""
        lines = text.splitlines()
        if self.commas:
            lines = [item for line in lines for item in line.split(",")]
        return [item.strip() for item in lines if item.strip()]


class HeadersField(forms.CharField):
    """``{"x-version": ["2", "3"]}`` shown as lines of ``X-Version: 2``."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return "\n".join(f"{name}: {v}" for name, values in value.items() for v in values)
        return value

    def to_python(self, value: Any) -> dict[str, list[str]]:
        if isinstance(value, dict):
            return value
        headers: dict[str, list[str]] = {}
        for line in (super().to_python(value) or "").splitlines():
            if not line.strip():
                continue
            name, sep, header_value = line.partition(":")
            if not sep or not name.strip():
                raise ValidationError(f"{line!r} is not of the form 'Name: value'.")
            headers.setdefault(name.strip(), []).append(header_value.strip())
        return headers


class RouteForm(forms.ModelForm):
    paths = LinesField(
        commas=False, required=False, help_text=Route._meta.get_field("paths").help_text
    )
    hosts = LinesField(required=False, help_text=Route._meta.get_field("hosts").help_text)
    methods = LinesField(
        required=False, help_text=f"Empty: any. One of {', '.join(validation.HTTP_METHODS)}."
    )
    headers = HeadersField(
        required=False,
        help_text="One 'Name: value' per line; repeat a name to accept several values.",
    )

    class Meta:
        model = Route
        exclude: list[str] = []
