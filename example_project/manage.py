#!/usr/bin/env python
"""Django's command-line utility for the django-gateway example project.

Run it from anywhere: ``python example_project/manage.py demo`` (what ``make demo`` does).
"""

import os
import sys
from pathlib import Path

# The checkout this project lives in, so the demo also runs without `pip install -e .`
# (an installed django_gateway comes first on sys.path and wins).
sys.path.append(str(Path(__file__).resolve().parent.parent))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
