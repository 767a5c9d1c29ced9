"""The one place that builds Redis clients for market state.

Web requests, the admin, beat's tasks and the sync consumer share one thread-safe
client per process (``sync_redis``); asyncio code gets one client per event loop
(``async_redis``), and the producer, which owns its loop's lifetime, a private one
(``new_async_redis``). All are built from ``settings.MARKET_REDIS_URL`` with
``settings.REDIS_CONNECTION_OPTIONS`` (explicit timeouts and pool bounds: redis-py 8's
defaults crash idle subscribers).

Tests swap the target with ``use_redis(url, **options)`` instead of patching globals.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

from dashboard.market.loop_services import services

# Connections per event loop: enough for every subscribe in flight during a reconnect storm.
ASYNC_POOL_SIZE = 64
SYNC_POOL_SIZE = 64


class RedisClients:
    """Clients of one Redis URL: a shared sync one and one per event loop, built lazily."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options
        self._sync: redis.Redis | None = None
        self._lock = threading.Lock()

    def sync(self) -> redis.Redis:
        with self._lock:
            if self._sync is None:
                # Blocking too: the sync consumer's and the web's threads wait for a connection.
                pool = redis.BlockingConnectionPool.from_url(
                    self.url,
                    max_connections=SYNC_POOL_SIZE,
                    timeout=self.options.get("socket_timeout", 10),
                    **self.options,
                )
                self._sync = redis.Redis(connection_pool=pool)
            return self._sync

    def for_running_loop(self) -> aioredis.Redis:
        return services.get(self.new_async)

    def new_async(self) -> aioredis.Redis:
        # A blocking pool: past its size a command waits for a free connection (up to the
        # socket timeout) instead of failing with MaxConnectionsError, which is what a
        # crowd of subscribes at once would otherwise get (redis-py's default pool raises).
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=ASYNC_POOL_SIZE, timeout=self.options.get("socket_timeout", 10), **self.options
        )
        return aioredis.Redis(connection_pool=pool)


_current: RedisClients | None = None
_current_lock = threading.Lock()


def clients() -> RedisClients:
    """This process's clients (from settings on first use)."""
    global _current
    with _current_lock:
        if _current is None:
            _current = RedisClients(settings.MARKET_REDIS_URL, dict(settings.REDIS_CONNECTION_OPTIONS))
        return _current


def sync_redis() -> redis.Redis:
    """The process-wide synchronous client (thread-safe pool)."""
    return clients().sync()


def async_redis() -> aioredis.Redis:
    """The asyncio client of the running event loop (Daphne runs one loop per process)."""
    return clients().for_running_loop()


def new_async_redis() -> aioredis.Redis:
    """A private asyncio client; the caller closes it (``aclose``)."""
    return clients().new_async()


@contextlib.contextmanager
def use_redis(url: str, **options: Any) -> Iterator[RedisClients]:
    """Point every client at ``url`` for the duration (tests: a dead port, another server)."""
    global _current
    with _current_lock:
        previous = _current
        _current = RedisClients(url, {**settings.REDIS_CONNECTION_OPTIONS, **options})
        swapped = _current
    try:
        yield swapped
    finally:
        with _current_lock:
            _current = previous
