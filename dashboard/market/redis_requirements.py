"""The Redis settings Ticker relies on, checked at start and by `manage.py check`.

Leases, sequences, recent ticks and the Celery broker's queues live in Redis; an
eviction policy would drop them silently under memory pressure (a lease evicted means
two producers; a broker key evicted means lost tasks). Only ``noeviction`` is safe.
"""

from __future__ import annotations

import logging

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


def enforce(client: redis.Redis) -> None:
    """Refuse to start on an unsafe Redis; tolerate an unreachable one (it may come later)."""
    try:
        found = problems(client)
    except redis.RedisError as exc:
        logger.warning("Redis settings not checked, server unreachable: %r", exc)
        return
    if found:
        raise RedisRequirementError("; ".join(found))
