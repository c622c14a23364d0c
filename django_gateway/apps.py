from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "django_gateway"
    verbose_name = "API gateway"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, signals

        checks.register()
        signals.connect()
