"""App config: connects the catalog-change signals and registers the Redis settings check."""

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.checks import register

        from dashboard import signals  # noqa: F401 - registers receivers
        from dashboard.checks import redis_settings

        register(redis_settings, "ticker")
