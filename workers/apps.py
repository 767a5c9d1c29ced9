"""App config for the workers package: registers the Redis settings check."""

from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.checks import register

        from workers.redis_requirements import django_check

        register(django_check, "ticker")
