"""Consumers and their credentials (Kong's Consumer, key-auth and jwt credentials)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from ..auth.jwt_credentials import credential_material
from . import validation


class Consumer(models.Model):
    """Who calls the gateway: identified by a credential, grouped for ACLs."""

    username = models.CharField(max_length=150, unique=True)
    custom_id = models.CharField(
        max_length=150, blank=True, help_text=_("Your own id for this consumer, sent upstream.")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="gateway_consumers",
    )
    groups = models.JSONField(
        default=list, blank=True, help_text=_("ACL groups routes allow or deny, one per line.")
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["username"]
        constraints = [
            models.UniqueConstraint(
                fields=["custom_id"],
                condition=~models.Q(custom_id=""),
                name="gateway_consumer_custom_id_unique",
                violation_error_message="Another consumer already has this custom id.",
            )
        ]

    def __str__(self) -> str:
        return self.username

    def clean(self) -> None:
        """Username, custom id and groups are sent upstream as header values."""
        super().clean()
        errors = validation.apply_rules(
            self,
            (
                ("username", validation.header_value),
                ("custom_id", validation.header_value),
                ("groups", validation.group_names),
            ),
        )
        if errors:
            raise ValidationError(errors)


class APIKey(models.Model):
    """An API key: only a hash is stored; the key itself is shown once, when it is issued."""

    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE, related_name="api_keys")
    NAME_MAX_LENGTH = 100  # an int to code that checks names first; max_length is optional
    name = models.CharField(max_length=NAME_MAX_LENGTH, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        ordering = ["consumer", "-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or self.consumer})"


class JWTAlgorithm(models.TextChoices):
    HS256 = "HS256"
    HS384 = "HS384"
    HS512 = "HS512"
    RS256 = "RS256"
    RS384 = "RS384"
    RS512 = "RS512"
    PS256 = "PS256"
    ES256 = "ES256"
    ES384 = "ES384"
    EDDSA = "EdDSA", "EdDSA"


class JWTCredential(models.Model):
    """Verifies tokens whose key claim (``iss`` by default) equals ``key``.

    One algorithm per credential: a token signed with any other is refused, which is what stops
    the HS256-signed-with-the-RSA-public-key attack.
    """

    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE, related_name="jwt_credentials")
    key = models.CharField(
        max_length=255, unique=True, help_text=_("Matched against the token's key claim (iss).")
    )
    algorithm = models.CharField(max_length=8, choices=JWTAlgorithm.choices)
    secret = models.CharField(max_length=512, blank=True, help_text=_("HS* algorithms only."))
    public_key = models.TextField(blank=True, help_text=_("PEM public key (RS*, PS*, ES*, EdDSA)."))
    jwks_url = models.URLField(
        blank=True, help_text=_("Fetch verification keys from a JWKS document instead.")
    )
    audience = models.CharField(
        max_length=255, blank=True, help_text=_("Required 'aud' value, if any.")
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "JWT credential"
        ordering = ["consumer", "key"]

    def __str__(self) -> str:
        return f"{self.key} ({self.algorithm})"

    def clean(self) -> None:
        """One kind of material per algorithm, and material that loads: HS* a long enough secret;
        RS*/PS*/ES*/EdDSA exactly one of a fitting PEM public key or an http(s) JWKS URL.
        Errors are keyed by field so the admin shows each next to its input."""
        super().clean()
        credential_material(  # the same rules the snapshot applies
            self.algorithm, self.secret or "", self.public_key or "", self.jwks_url or ""
        )
