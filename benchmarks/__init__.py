"""Benchmarks for django-gateway (DESIGN §7); run them with ``make bench``. See docs/benchmarks.md."""
