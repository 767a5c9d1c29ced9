"""What both consumers share: limits from settings, market-state readers, frames they build alike.

Keeping these in one place is what makes the async multi-symbol stream and the sync
single-symbol stream behave identically where they overlap.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

from dashboard import protocol
from workers.market_store import Snapshot

_sync_client: redis.Redis | None = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def server_time() -> int:
    return time.time_ns() // 1_000_000


def limits() -> protocol.Limits:
    cfg = settings.TICKER
    return protocol.Limits(
        max_frame_bytes=cfg["MAX_FRAME_BYTES"],
        max_symbols=cfg["MAX_SYMBOLS_PER_CONNECTION"],
        max_client_frames_per_second=cfg["MAX_CLIENT_FRAMES_PER_SECOND"],
    )


def hello(catalog: Sequence[Mapping[str, Any]]) -> str:
    return protocol.hello_frame(
        server_time=server_time(),
        heartbeat_ms=settings.TICKER["HEARTBEAT_MS"],
        limits=limits(),
        symbols=catalog,
    )


def snapshot(snap: Snapshot, status: str, interval: str, recovered: bool | None = None) -> str:
    return protocol.snapshot_frame(
        symbol=snap.symbol,
        epoch=snap.epoch,
        seq=snap.seq,
        quote=snap.quote,
        candles=snap.candles,
        status=status,
        interval=interval,
        recovered=recovered,
    )


def sync_redis() -> redis.Redis:
    """A process-wide synchronous client (thread-safe pool) for the sync consumer."""
    global _sync_client
    with _lock:
        if _sync_client is None:
            _sync_client = redis.Redis.from_url(settings.MARKET_REDIS_URL, **settings.REDIS_CONNECTION_OPTIONS)
        return _sync_client


def async_redis() -> aioredis.Redis:
    """An asyncio client for the running event loop (Daphne runs one per process)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.from_url(settings.MARKET_REDIS_URL, **settings.REDIS_CONNECTION_OPTIONS)
        _async_clients[loop] = client
    return client
