"""Django system checks (tag ``ticker``), run by ``manage.py check`` and at start-up."""

from __future__ import annotations

from typing import Any

import redis
from django.core.checks import Error, Warning

from dashboard.market.client import sync_redis
from dashboard.market.redis_requirements import problems


def redis_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The market Redis's eviction policy."""
    try:
        return [Error(message, id="ticker.E001") for message in problems(sync_redis())]
    except redis.RedisError as exc:
        return [Warning(f"Redis unreachable, settings not checked: {exc!r}", id="ticker.W001")]
