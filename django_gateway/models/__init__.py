"""The gateway's configuration, stored as ordinary rows (DESIGN §2)."""

from .consumers import APIKey, Consumer, JWTAlgorithm, JWTCredential
from .limits import PERIOD_SECONDS, LimitBy, Period, RateLimit
from .routes import Authentication, Route
from .services import Protocol, Service, Target
from .state import ConfigRevision

__all__ = [
    "PERIOD_SECONDS",
    "APIKey",
    "Authentication",
    "ConfigRevision",
    "Consumer",
    "JWTAlgorithm",
    "JWTCredential",
    "LimitBy",
    "Period",
    "Protocol",
    "RateLimit",
    "Route",
    "Service",
    "Target",
]
