"""The apps every test settings module loads: the suite's (``tests.settings``) and the type
checker's (``tests.typecheck_settings``), which must not drift apart."""

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_gateway",
]
