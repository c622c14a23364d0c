"""Django admin for services, targets, routes, consumers, their credentials and rate limits.

One module per model family; importing the package registers them all (Django imports
``django_gateway.admin`` through ``autodiscover``).
"""

from .consumers import ConsumerAdmin
from .keys import APIKeyAdmin
from .limits import RateLimitAdmin
from .routes import RouteAdmin
from .services import ServiceAdmin

__all__ = ["APIKeyAdmin", "ConsumerAdmin", "RateLimitAdmin", "RouteAdmin", "ServiceAdmin"]
