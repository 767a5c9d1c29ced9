"""Fixtures for consumer tests: symbols, a logged-in session, a running producer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from dashboard.market.client import new_async_redis
from dashboard.market.store import state_key
from dashboard.models import Symbol
from dashboard.streams import catalog as catalogs
from tests.waiting import until
from ticker.asgi import application
from workers.alerts import AlertWatcher
from workers.producer import Producer, ProducerConfig
from workers.specs import producer_specs

ORIGIN = b"http://127.0.0.1"


@pytest.fixture(autouse=True)
def fresh_catalog() -> None:
    """Each test reads the catalog of its own database (connection counts and the other
    per-loop services start afresh with each test's event loop: ``loop_services``)."""
    catalogs.forget()


@pytest.fixture
def symbols(transactional_db, redis_client) -> list[Symbol]:
    rows = [
        Symbol(symbol="AAA", name="Triple A", initial_price=Decimal("100"), tick_interval_ms=50),
        Symbol(symbol="BBB", name="Double B", initial_price=Decimal("20"), precision=3, tick_interval_ms=100),
        Symbol(symbol="OFF", name="Disabled", initial_price=Decimal("5"), enabled=False),
    ]
    for row in rows:
        row.full_clean()
        row.save()
    return rows


@pytest.fixture
def session_cookie(transactional_db, django_user_model, client) -> str:
    user = django_user_model.objects.create_user(username="alice", password="not-used-here-1")
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def _all_exist(client: Any, keys: list[str]) -> bool:
    return await client.exists(*keys) == len(keys)


@contextlib.asynccontextmanager
async def running_producer(*, wait_for_ticks: bool = True, alerts: bool = False) -> AsyncIterator[Producer]:
    """The real producer, on the test's event loop, reading the catalog (and with ``alerts``, price alerts)
    from the database."""
    client = new_async_redis()
    layer = get_channel_layer()
    running = Producer(
        ProducerConfig(owner="test-producer", window_ms=50, catalog_refresh_ms=200),
        redis=client,
        layer=layer,
        load_catalog=sync_to_async(producer_specs, thread_sensitive=False),
        rng=random.Random(5),
        alerts=AlertWatcher(layer) if alerts else None,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        if wait_for_ticks:
            keys = [state_key(s) for s in ("AAA", "BBB")]
            await until(lambda: _all_exist(client, keys), 10, "the producer's first ticks of AAA and BBB")
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.aclose()


@pytest.fixture
async def producer(symbols) -> AsyncIterator[Producer]:
    """A running producer whose series have started (snapshots have an epoch)."""
    async with running_producer() as running:
        yield running


@pytest.fixture
async def connect(session_cookie) -> AsyncIterator[Callable[..., Any]]:
    """Open a WebSocket through the full ASGI stack (origin check, session, router)."""
    opened: list[WebsocketCommunicator] = []

    async def _connect(path: str, *, cookie: str | None = session_cookie, origin: bytes | None = ORIGIN):
        headers = [(b"host", b"127.0.0.1")]
        if origin is not None:
            headers.append((b"origin", origin))
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        communicator = WebsocketCommunicator(application, path, headers=headers)
        opened.append(communicator)
        connected, code = await communicator.connect(timeout=5)
        return communicator, connected, code

    yield _connect
    for communicator in opened:
        with contextlib.suppress(Exception):  # already closed by the test
            await communicator.disconnect()


async def next_frame(communicator: WebsocketCommunicator, frame_type: str, timeout: float = 5.0) -> dict:
    """The next frame of ``frame_type``, skipping others (heartbeats, ticks...)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no {frame_type!r} frame within {timeout} s")
        frame = json.loads(await communicator.receive_from(timeout=remaining))
        if frame["type"] == frame_type:
            return frame


async def collect_ticks(communicator: WebsocketCommunicator, count: int, timeout: float = 10.0) -> list[dict]:
    ticks: list[dict] = []
    while len(ticks) < count:
        ticks += (await next_frame(communicator, "ticks", timeout))["data"]
    return ticks


async def live_snapshot(communicator: WebsocketCommunicator, timeout: float = 5.0) -> dict:
    """The first snapshot of a started series (one taken before the producer's first tick has no epoch)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        snapshot = await next_frame(communicator, "snapshot", max(deadline - loop.time(), 0.01))
        if snapshot["epoch"]:
            return snapshot
