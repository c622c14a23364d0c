"""The gateway's configuration, stored as ordinary rows (DESIGN §2)."""

from .routes import Route
from .services import Protocol, Service, Target
from .state import ConfigRevision

__all__ = ["ConfigRevision", "Protocol", "Route", "Service", "Target"]
