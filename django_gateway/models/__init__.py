"""The gateway's configuration, stored as ordinary rows (DESIGN §2)."""

from .consumers import APIKey, Consumer, JWTAlgorithm, JWTCredential
from .limits import PERIOD_SECONDS, LimitBy, Period, RateLimit
from .routes import Authentication, Route
from .services import Discovery, HashOn, LoadBalancing, Protocol, Service, Source, Target
from .state import ConfigRevision

__all__ = [
    "PERIOD_SECONDS",
    "APIKey",
    "Authentication",
    "ConfigRevision",
    "Consumer",
    "Discovery",
    "HashOn",
    "JWTAlgorithm",
    "JWTCredential",
    "LimitBy",
    "LoadBalancing",
    "Period",
    "Protocol",
    "RateLimit",
    "Route",
    "Service",
    "Source",
    "Target",
]
