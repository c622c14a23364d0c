"""Rate limits (Kong's rate-limiting plugin as rows): ``limit`` requests per ``period``.

A limit applies to one route, to every route of one service, or (neither set) to every route.
``consumer`` narrows it to one consumer: that is how plans work — a consumer's own limit for a
scope and period replaces the general limit of the same scope and period for that consumer. Every
limit that applies to a request is enforced; see ``docs/rate-limiting.md``.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from . import validation


class Period(models.TextChoices):
    SECOND = "second", _("second")
    MINUTE = "minute", _("minute")
    HOUR = "hour", _("hour")
    DAY = "day", _("day")
    MONTH = "month", _("month (30 days)")


PERIOD_SECONDS = {
    Period.SECOND: 1,
    Period.MINUTE: 60,
    Period.HOUR: 3600,
    Period.DAY: 86400,
    Period.MONTH: 30 * 86400,
}


class LimitBy(models.TextChoices):
    CONSUMER = "consumer", _("consumer (client IP when anonymous)")
    CREDENTIAL = "credential", _("credential (client IP when anonymous)")
    IP = "ip", _("client IP (IPv6 by /64)")
    HEADER = "header", _("a request header (client IP when absent)")


class RateLimit(models.Model):
    route = models.ForeignKey(
        "django_gateway.Route",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="rate_limits",
        help_text=_("Limit this route only."),
    )
    service = models.ForeignKey(
        "django_gateway.Service",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="rate_limits",
        help_text=_(
            "Limit all routes of this service together. Neither route nor service: global."
        ),
    )
    consumer = models.ForeignKey(
        "django_gateway.Consumer",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="rate_limits",
        help_text=_(
            "Only for this consumer; replaces the general limit with the same scope and period."
        ),
    )
    limit = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    period = models.CharField(max_length=6, choices=Period.choices, default=Period.MINUTE)
    limit_by = models.CharField(max_length=10, choices=LimitBy.choices, default=LimitBy.CONSUMER)
    header_name = models.CharField(
        max_length=100, blank=True, help_text=_("The header counted by, when limiting by header.")
    )
    fault_tolerant = models.BooleanField(
        default=True,
        help_text=_(
            "Let requests through (without rate-limit headers) while Redis is unreachable; "
            "otherwise answer 503."
        ),
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["route", "service", "consumer", "period", "pk"]

    def __str__(self) -> str:
        return f"{self.limit}/{self.period} by {self.limit_by} on {self.scope_label}" + (
            f" for {self.consumer}" if self.consumer_id else ""
        )

    @property
    def scope_label(self) -> str:
        if self.route_id:
            return f"route {self.route}"
        if self.service_id:
            return f"service {self.service}"
        return "every route"

    @property
    def period_seconds(self) -> int:
        return PERIOD_SECONDS[Period(self.period)]

    def clean(self) -> None:
        super().clean()
        errors: dict[str, list[str]] = {}
        if self.route_id and self.service_id:
            errors["service"] = [
                str(_("A limit applies to a route or to a service, not both; leave one empty."))
            ]
        self.header_name = (self.header_name or "").strip()
        if self.limit_by == LimitBy.HEADER:
            if not self.header_name:
                errors["header_name"] = [str(_("Name the header to limit by."))]
            else:
                errors.update(
                    validation.apply_rules(self, [("header_name", validation.header_name)])
                )
        elif self.header_name:
            errors["header_name"] = [str(_("Only used when limiting by header; leave it empty."))]
        if errors:
            raise ValidationError(errors)
