"""Marks shared by test modules; nothing here imports Django (spawned test processes import it)."""

import pytest

#: For tests that fork a process holding threads on purpose, as gunicorn does after loading the
#: app (Python 3.12 warns that this may deadlock; the code under test is what must prevent it).
forks_like_gunicorn = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)
