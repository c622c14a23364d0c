"""Upstream services and their static targets (Kong's Service and Target)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from ..netpolicy import forbidden_upstream_reason
from .validation import host_pattern


class Protocol(models.TextChoices):
    HTTP = "http", "http"
    HTTPS = "https", "https"


class Service(models.Model):
    """An upstream API the gateway proxies to; routes point at it, targets are its instances."""

    name = models.SlugField(max_length=100, unique=True)
    protocol = models.CharField(max_length=5, choices=Protocol.choices, default=Protocol.HTTP)
    path = models.CharField(
        max_length=255,
        blank=True,
        help_text=_("Base path on the upstream, prepended to every forwarded path (e.g. /v1)."),
    )
    connect_timeout = models.FloatField(
        default=5.0,
        validators=[MinValueValidator(0.001)],
        help_text=_("Seconds to establish a connection to an instance."),
    )
    read_timeout = models.FloatField(
        default=60.0,
        validators=[MinValueValidator(0.001)],
        help_text=_("Seconds the upstream may stay silent while sending or receiving."),
    )
    timeout = models.FloatField(
        default=120.0,
        validators=[MinValueValidator(0.001)],
        help_text=_("Total deadline per try, in seconds, until the response head arrives."),
    )
    retries = models.PositiveSmallIntegerField(
        default=2,
        validators=[MaxValueValidator(10)],
        help_text=_("Further tries on another instance when the policy allows a retry."),
    )
    tls_verify = models.BooleanField(
        default=True, help_text=_("Verify the upstream's certificate (https only).")
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        if self.path:
            if not self.path.startswith("/"):
                raise ValidationError({"path": _("The base path must start with '/'.")})
            if any(ch in self.path for ch in "?#\\\r\n\x00 "):
                raise ValidationError(
                    {
                        "path": _(
                            "The base path must not contain '?', '#', spaces or control characters."
                        )
                    }
                )
            self.path = self.path.rstrip("/")


class Target(models.Model):
    """A static instance of a service: ``host:port`` with a load-balancing weight."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="targets")
    host = models.CharField(max_length=255, help_text=_("IP address or DNS name."))
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    weight = models.PositiveIntegerField(
        default=100,
        validators=[MaxValueValidator(1000)],
        help_text=_("Relative share of traffic; 0 keeps the target configured but unused."),
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["service", "host", "port"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "host", "port"], name="gateway_target_unique"
            )
        ]

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def clean(self) -> None:
        super().clean()
        self.host = self.host.strip().strip("[]").lower()
        reason = forbidden_upstream_reason(self.host)
        if reason:
            raise ValidationError(
                {"host": _("%(reason)s; not allowed as an upstream.") % {"reason": reason}}
            )
        if ":" not in self.host:  # not an IPv6 literal: must be an IPv4 literal or a DNS name
            try:
                host_pattern(self.host)
            except ValidationError as exc:
                raise ValidationError({"host": exc.messages}) from exc
            if self.host.startswith("*"):
                raise ValidationError({"host": _("Targets cannot be wildcards.")})
