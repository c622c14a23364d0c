"""Django admin for services, targets, routes, consumers and their credentials.

One module per model family; importing the package registers them all (Django imports
``django_gateway.admin`` through ``autodiscover``).
"""

from .consumers import ConsumerAdmin
from .keys import APIKeyAdmin
from .routes import RouteAdmin
from .services import ServiceAdmin

__all__ = ["APIKeyAdmin", "ConsumerAdmin", "RouteAdmin", "ServiceAdmin"]
