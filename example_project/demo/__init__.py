"""The example project's demo app: local upstreams, seed data and the ``demo`` command."""
