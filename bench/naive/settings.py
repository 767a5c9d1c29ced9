"""Settings of the naive reference: what a Channels tutorial ends with, nothing tuned."""

from __future__ import annotations

import os

SECRET_KEY = "bench-naive-reference-not-secret"  # noqa: S105 - local benchmark only
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
ROOT_URLCONF = "bench.naive.urls"
ASGI_APPLICATION = "bench.naive.asgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# The core layer at its defaults (capacity 100, expiry 60 s, redis-py's own pool and timeouts).
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
