"""The Ticker project: settings, ASGI entry point, URLs and the Celery app."""

from ticker.celery import app as celery_app

__all__ = ["celery_app"]
