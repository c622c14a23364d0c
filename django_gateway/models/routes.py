"""Routes: which requests go to which service, and how they are rewritten on the way."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from . import validation
from .services import Service, Source


class Authentication(models.TextChoices):
    NONE = "none", _("none: open route")
    KEY = "key", _("API key")
    JWT = "jwt", _("JWT")
    ANY = "any", _("API key or JWT")


class Route(models.Model):
    """Matches requests by host, path prefix (or ``~regex``), method and headers."""

    NAME_MAX_LENGTH = 100  # an int to code that fits names (Consul sync); max_length is optional
    name = models.SlugField(max_length=NAME_MAX_LENGTH, unique=True)
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="routes")
    paths = models.JSONField(
        default=list,
        blank=True,
        help_text=_(
            "One per line: path prefixes matched on segment boundaries; '~' starts a regex (RE2)."
        ),
    )
    hosts = models.JSONField(
        default=list,
        blank=True,
        help_text=_("One per line: host names; '*.example.com' matches any sub-domain."),
    )
    methods = models.JSONField(default=list, blank=True, help_text=_("Empty: any method."))
    headers = models.JSONField(
        default=dict,
        blank=True,
        help_text=_('Required request headers: {"X-Version": ["2", "3"]} (any listed value).'),
    )
    priority = models.IntegerField(
        default=0, help_text=_("Breaks ties between equally specific routes; higher wins.")
    )
    strip_path = models.BooleanField(
        default=True, help_text=_("Remove the matched prefix before forwarding.")
    )
    preserve_host = models.BooleanField(
        default=False, help_text=_("Send the client's Host header instead of the upstream's.")
    )
    websocket = models.BooleanField(
        default=False,
        help_text=_(
            "Carry WebSocket upgrades to the upstream (ASGI shell). The handshake passes "
            "authentication, access rules and rate limits like any request."
        ),
    )
    connect_timeout = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.001)]
    )
    read_timeout = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.001)])
    timeout = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.001)])
    max_response_duration = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.001)],
        help_text=_(
            "Longest time in seconds from the start of a try to the last response byte, "
            "streamed bodies included; a stream still running then is cut off. "
            "Empty: streamed bodies have no total limit."
        ),
    )
    max_body_size = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text=_("Largest request body in bytes; empty uses GATEWAY['MAX_BODY_SIZE']."),
    )
    authentication = models.CharField(
        max_length=4, choices=Authentication.choices, default=Authentication.NONE
    )
    anonymous_consumer = models.ForeignKey(
        "django_gateway.Consumer",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_(
            "Requests without valid credentials proceed as this consumer (Kong's anonymous)."
        ),
    )
    hide_credentials = models.BooleanField(
        default=True, help_text=_("Remove the credential from the request before proxying.")
    )
    allowed_groups = models.JSONField(
        default=list, blank=True, help_text=_("Only consumers in one of these groups may pass.")
    )
    denied_groups = models.JSONField(
        default=list, blank=True, help_text=_("Consumers in any of these groups are refused.")
    )
    allowed_ips = models.JSONField(
        default=list, blank=True, help_text=_("Only clients in these networks may pass (CIDRs).")
    )
    denied_ips = models.JSONField(
        default=list, blank=True, help_text=_("Clients in these networks are refused (CIDRs).")
    )
    source = models.CharField(
        max_length=10, choices=Source.choices, default=Source.OPERATOR, editable=False
    )
    operator_override = models.BooleanField(
        default=False,
        help_text=_(
            "For routes imported from Consul tags: keep this route as it is here; "
            "gateway_sync_services no longer changes or re-enables it."
        ),
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
        errors = validation.apply_rules(
            self,
            (
                ("paths", validation.route_paths),
                ("hosts", validation.route_hosts),
                ("methods", validation.route_methods),
                ("headers", validation.route_headers),
                ("allowed_groups", validation.group_names),
                ("denied_groups", validation.group_names),
                ("allowed_ips", validation.cidr_list),
                ("denied_ips", validation.cidr_list),
            ),
        )
        if not errors and not (self.paths or self.hosts or self.headers):
            errors["paths"] = [
                str(_("A route needs at least one path, host or header to match on."))
            ]
        if (self.allowed_groups or self.denied_groups) and self.authentication == "none":
            errors.setdefault("allowed_groups", []).append(
                str(_("Group rules need an authenticated consumer: choose an authentication mode."))
            )
        if errors:
            raise ValidationError(errors)
