"""Upstream services and their static targets (Kong's Service and Target)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from ..netpolicy import forbidden_upstream_reason
from . import validation
from .validation import host_pattern


class Protocol(models.TextChoices):
    HTTP = "http", "http"
    HTTPS = "https", "https"


class Discovery(models.TextChoices):
    STATIC = "static", "static targets"
    CONSUL = "consul", "Consul"


class LoadBalancing(models.TextChoices):
    ROUND_ROBIN = "round_robin", "weighted round robin"
    LEAST_CONNECTIONS = "least_connections", "least connections"
    RANDOM = "random", "random (power of two choices)"
    CONSISTENT_HASH = "consistent_hash", "consistent hashing"


class HashOn(models.TextChoices):
    IP = "ip", "client IP"
    CONSUMER = "consumer", "consumer (client IP when anonymous)"
    HEADER = "header", "a request header (client IP when absent)"
    COOKIE = "cookie", "a cookie (client IP when absent)"


class Source(models.TextChoices):
    OPERATOR = "operator", "created by an operator"
    CONSUL = "consul", "imported from Consul (gateway_sync_services)"


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
    max_concurrent_requests = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_(
            "Most requests this service may have in flight in one gateway process; past it the "
            "gateway answers 503 with Retry-After. Empty: unlimited."
        ),
    )
    discovery = models.CharField(
        max_length=10,
        choices=Discovery.choices,
        default=Discovery.STATIC,
        help_text=_("Where instances come from: the targets below, or Consul's catalog."),
    )
    consul_service = models.CharField(
        max_length=200, blank=True, help_text=_("Name in Consul; empty means this service's name.")
    )
    consul_tags = models.JSONField(
        default=list, blank=True, help_text=_("Only instances carrying all of these tags.")
    )
    consul_datacenter = models.CharField(
        max_length=100, blank=True, help_text=_("Empty: the agent's own datacenter.")
    )
    consul_include_warning = models.BooleanField(
        default=False, help_text=_("Also route to instances whose checks are 'warning'.")
    )
    load_balancing = models.CharField(
        max_length=20, choices=LoadBalancing.choices, default=LoadBalancing.ROUND_ROBIN
    )
    hash_on = models.CharField(
        max_length=10,
        choices=HashOn.choices,
        default=HashOn.IP,
        help_text=_("What consistent hashing keeps on one instance."),
    )
    hash_on_header = models.CharField(max_length=100, blank=True)
    hash_on_cookie = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.OPERATOR)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        self._clean_balancing()
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

    def _clean_balancing(self) -> None:
        errors = validation.apply_rules(self, [("consul_tags", validation.consul_tags)])
        if self.load_balancing == LoadBalancing.CONSISTENT_HASH:
            if self.hash_on == HashOn.HEADER and not self.hash_on_header:
                errors["hash_on_header"] = [str(_("Name the header to hash on."))]
            if self.hash_on == HashOn.COOKIE and not self.hash_on_cookie:
                errors["hash_on_cookie"] = [str(_("Name the cookie to hash on."))]
        if self.hash_on_header:
            errors.update(
                validation.apply_rules(self, [("hash_on_header", validation.header_name)])
            )
        if errors:
            raise ValidationError(errors)


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
