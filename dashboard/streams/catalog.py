"""The symbol catalog as this process's streams see it: one database read per catalog
version, not one per connection.

A crowd of dashboards connecting at once (after a deploy) would otherwise run the same
catalog query a thousand times. The copy is keyed by the catalog version in Redis
(``store.CATALOG_VERSION_KEY``, bumped by every change before it is announced), so a
stream never starts from a catalog older than the last announcement it could have
missed; a Redis GET replaces the query. ``MAX_AGE`` bounds staleness if a change ever
skipped the bump (Redis away at that moment).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from channels.db import database_sync_to_async

from dashboard.market import store
from dashboard.market.client import async_redis, sync_redis
from dashboard.selectors import catalog_entries

MAX_AGE = 5.0

_lock = threading.Lock()
# (read at, version, catalog)
_cached: tuple[float, bytes | None, list[dict[str, Any]]] | None = None


def _lookup(version: bytes | None) -> list[dict[str, Any]] | None:
    # The one list of one version, shared by every stream that opens on it, read-only: a copy
    # per connection was 2.4 KiB of every idle stream's memory (docs/performance.md).
    with _lock:
        if _cached is not None and _cached[1] == version and time.monotonic() - _cached[0] < MAX_AGE:
            return _cached[2]
    return None


def _keep(version: bytes | None, catalog: list[dict[str, Any]]) -> None:
    global _cached
    with _lock:
        _cached = (time.monotonic(), version, catalog)


def forget() -> None:
    """Drop the copy (tests that rebuild the database between cases)."""
    global _cached
    with _lock:
        _cached = None


def current() -> list[dict[str, Any]]:
    """The catalog (sync: the single-symbol consumer's thread)."""
    try:
        version = sync_redis().get(store.CATALOG_VERSION_KEY)
    except redis.RedisError:
        return catalog_entries()
    found = _lookup(version)
    if found is None:
        found = catalog_entries()
        _keep(version, found)
    return found


async def acurrent() -> list[dict[str, Any]]:
    """``current`` for asyncio code."""
    try:
        version = await async_redis().get(store.CATALOG_VERSION_KEY)
    except redis.RedisError:
        return await database_sync_to_async(catalog_entries)()
    found = _lookup(version)
    if found is None:
        found = await database_sync_to_async(catalog_entries)()
        _keep(version, found)
    return found
