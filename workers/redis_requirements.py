"""The Redis settings Ticker relies on, checked at start and by `manage.py check`.

Leases, sequences, recent ticks and the Celery broker's queues live in Redis; an
eviction policy would drop them silently under memory pressure (a lease evicted means
two producers; a broker key evicted means lost tasks). Only ``noeviction`` is safe.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

logger = logging.getLogger(__name__)

SAFE_POLICIES = frozenset({"noeviction"})


class RedisRequirementError(RuntimeError):
    """The Redis server is configured in a way that breaks Ticker's guarantees."""


def eviction_policy(client: redis.Redis) -> str | None:
    """The server's ``maxmemory-policy``, or None when it cannot be read (managed Redis)."""
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.ResponseError:
        return None
    value = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy")
    return value.decode() if isinstance(value, bytes) else value


def problems(client: redis.Redis) -> list[str]:
    policy = eviction_policy(client)
    if policy is not None and policy not in SAFE_POLICIES:
        return [f"Redis maxmemory-policy is {policy!r}: set it to 'noeviction' (evicted keys break leases and queues)"]
    return []


def enforce(url: str, options: dict[str, Any]) -> None:
    """Refuse to start on an unsafe Redis; tolerate an unreachable one (it may come later)."""
    client = redis.Redis.from_url(url, **options)
    try:
        found = problems(client)
    except redis.RedisError as exc:
        logger.warning("Redis settings not checked, server unreachable: %r", exc)
        return
    finally:
        client.close()
    if found:
        raise RedisRequirementError("; ".join(found))


def django_check(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """System check (tag ``ticker``): the market Redis's eviction policy."""
    from django.conf import settings
    from django.core.checks import Error, Warning

    client = redis.Redis.from_url(settings.MARKET_REDIS_URL, **settings.REDIS_CONNECTION_OPTIONS)
    try:
        return [Error(message, id="ticker.E001") for message in problems(client)]
    except redis.RedisError as exc:
        return [Warning(f"Redis unreachable, settings not checked: {exc!r}", id="ticker.W001")]
    finally:
        client.close()
