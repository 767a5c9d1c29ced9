"""The one Redis client factory: shared clients, and pools that wait rather than fail."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis

from dashboard.market.client import ASYNC_POOL_SIZE, async_redis, sync_redis, use_redis


def test_the_sync_client_is_shared_and_its_pool_waits_for_a_connection(redis_client) -> None:
    assert sync_redis() is sync_redis()
    assert isinstance(sync_redis().connection_pool, redis.BlockingConnectionPool)


async def test_a_burst_beyond_the_async_pool_waits_instead_of_failing(redis_client) -> None:
    client = async_redis()
    assert client is async_redis(), "one client per event loop"
    assert isinstance(client.connection_pool, aioredis.BlockingConnectionPool)
    # Twice the pool's connections in flight at once, each holding one for a moment:
    # redis-py's default pool raised MaxConnectionsError here (a connect storm's 'unavailable').
    burst = [client.blpop(f"nothing:{i}", timeout=0.2) for i in range(2 * ASYNC_POOL_SIZE)]
    assert await asyncio.gather(*burst) == [None] * (2 * ASYNC_POOL_SIZE)


def test_use_redis_points_every_client_elsewhere_and_back(redis_client) -> None:
    before = sync_redis()
    with use_redis("redis://127.0.0.1:1/0", socket_connect_timeout=0.2):
        assert sync_redis() is not before
    assert sync_redis() is before
