"""The response body every HTTP target serves: exactly 1 KiB, the same bytes everywhere."""

from __future__ import annotations

SIZE = 1024
# Plain ASCII letters and digits: safe inside an nginx ``return`` string, readable in a hex dump.
_ALPHABET = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
BODY = (_ALPHABET * (SIZE // len(_ALPHABET) + 1))[: SIZE - 1] + b"\n"

# The path the upstream serves; the Django variants reach it through their own prefixes.
UPSTREAM_PATH = "/bench"

assert len(BODY) == SIZE
