"""The test settings with the trust a production gateway is configured with: named hosts and one
trusted proxy (the loopback address every wire client connects from). Used by the servers of
``test_wire_trust.py`` only; the pytest process keeps ``tests.settings``."""

from tests.settings import *  # noqa: F403
from tests.settings import GATEWAY

ALLOWED_HOSTS = ["wire.test", ".gw.test"]
GATEWAY = {**GATEWAY, "TRUSTED_PROXIES": ["127.0.0.1/32"]}
