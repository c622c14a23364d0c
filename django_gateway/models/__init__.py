"""The gateway's configuration, stored as ordinary rows (DESIGN §2)."""

from .consumers import APIKey, Consumer, JWTAlgorithm, JWTCredential
from .routes import Authentication, Route
from .services import Protocol, Service, Target
from .state import ConfigRevision

__all__ = [
    "APIKey",
    "Authentication",
    "ConfigRevision",
    "Consumer",
    "JWTAlgorithm",
    "JWTCredential",
    "Protocol",
    "Route",
    "Service",
    "Target",
]
