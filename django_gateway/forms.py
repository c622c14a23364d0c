"""Admin forms: the JSON lists of routes and consumers edited as plain text, one entry per line."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from .models import Consumer, Route, Service, validation


class LinesField(forms.CharField):
    """A list of strings shown and entered as one item per line.

    Lines are the only separator, for every list field alike: a comma belongs to the entry (a
    regex like ``~/x/\\d{1,3}``, a tag like ``gateway.methods=GET,POST``), so ``a, b`` is one entry
    that the model's validation then refuses with a message saying "one per line" rather than a
    value silently split here and kept whole there.
    """

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(v) for v in value)
        return value

    # The field's value is the list (CharField's, text or None, is only the box's content).
    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        text = super().to_python(value) or ""
        return [item.strip() for item in text.splitlines() if item.strip()]


class HeadersField(forms.CharField):
    """``{"x-version": ["2", "3"]}`` shown as lines of ``X-Version: 2``."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return "\n".join(f"{name}: {v}" for name, values in value.items() for v in values)
        return value

    # The field's value is the mapping (CharField's, text or None, is only the box's content).
    def to_python(self, value: Any) -> dict[str, list[str]]:  # type: ignore[override]
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
    paths = LinesField(required=False, help_text=Route._meta.get_field("paths").help_text)
    hosts = LinesField(required=False, help_text=Route._meta.get_field("hosts").help_text)
    methods = LinesField(
        required=False,
        help_text=f"One per line; empty: any. Each one of {', '.join(validation.HTTP_METHODS)}.",
    )
    headers = HeadersField(
        required=False,
        help_text="One 'Name: value' per line; repeat a name to accept several values.",
    )
    allowed_groups = LinesField(
        required=False, help_text="Only consumers in one of these groups may pass. One per line."
    )
    denied_groups = LinesField(
        required=False, help_text="Consumers in any of these groups are refused. One per line."
    )
    allowed_ips = LinesField(
        required=False,
        help_text="Only clients in these networks may pass (10.0.0.0/8, 2001:db8::/32). One per line.",
    )
    denied_ips = LinesField(
        required=False, help_text="Clients in these networks are refused. One per line."
    )

    class Meta:
        model = Route
        exclude: list[str] = []


class ServiceForm(forms.ModelForm):
    # One tag per line, never split on commas: a tag such as gateway.methods=GET,POST holds one.
    consul_tags = LinesField(
        required=False,
        help_text="Only instances carrying all of these tags (one per line).",
    )

    class Meta:
        model = Service
        exclude: list[str] = []


class ConsumerForm(forms.ModelForm):
    groups = LinesField(required=False, help_text="ACL groups routes allow or deny, one per line.")

    class Meta:
        model = Consumer
        exclude: list[str] = []

    def clean_custom_id(self) -> str:
        """Unique when set: said here in words, where the model's conditional constraint would
        only name itself."""
        custom_id = self.cleaned_data.get("custom_id") or ""
        others = Consumer.objects.filter(custom_id=custom_id).exclude(pk=self.instance.pk)
        if custom_id and others.exists():
            raise ValidationError("Another consumer already has this custom id.")
        return custom_id
