"""The one place that reads ``settings.GATEWAY``.

Every key, its default and what it accepts are declared once, in
:mod:`django_gateway.settings_table` (``docs/settings.md`` is tested against it). Values are read
lazily and cached; the cache is dropped on Django's ``setting_changed`` signal so
``override_settings`` works in tests. Nothing binds a setting at import or class-definition
time, which is the mistake that makes DRF's ``throttle_classes`` ignore ``override_settings``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.signals import setting_changed

from .settings_table import DEFAULTS

#: The cache backend rate limits need (check E008): a Redis every process shares, via django-redis.
DJANGO_REDIS_BACKEND = "django_redis.cache.RedisCache"


_T = TypeVar("_T")


class GatewaySettings:
    """Attribute access to ``GATEWAY`` merged over :data:`DEFAULTS`, cached until settings change."""

    def __init__(self) -> None:
        self._derived: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, "GATEWAY", None) or {}

    def __getattr__(self, name: str) -> Any:
        """Only reached on a miss: the value is then stored on the instance, so the hot path
        reads a plain attribute from then on."""
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown GATEWAY setting {name!r}")
        value = self.user_settings.get(name, DEFAULTS[name])
        setattr(self, name, value)
        return value

    def derived(self, key: str, build: Callable[[], _T]) -> _T:
        """Cache a value computed from settings (parsed CIDRs, say) until the settings change."""
        try:
            # What ``build`` made under this key before: each key has one builder.
            return cast(_T, self._derived[key])
        except KeyError:
            value = self._derived[key] = build()
            return value

    def reload(self) -> None:
        for name in DEFAULTS:
            self.__dict__.pop(name, None)
        self._derived.clear()


gateway_settings = GatewaySettings()


# Settings outside GATEWAY that derived values depend on (the remembered ALLOWED_HOSTS answers).
_ALSO_RELOAD_ON = {"GATEWAY", "ALLOWED_HOSTS", "USE_X_FORWARDED_HOST", "DEBUG"}


def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting in _ALSO_RELOAD_ON:
        gateway_settings.reload()


setting_changed.connect(_reload_on_change)
