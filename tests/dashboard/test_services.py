"""A deleted symbol leaves nothing in Redis, against the real producer, Redis and database:
the code created again starts a new epoch with its own history, not the old series."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from dashboard.market import store as market_store
from dashboard.market.client import new_async_redis, sync_redis
from dashboard.models import Candle, Symbol
from tests.waiting import until
from workers.backfill import HOUR_MS
from workers.history import HistoryBackfill
from workers.producer import Producer, ProducerConfig
from workers.simulator import DEFAULT_TIME_SCALE, SymbolSpec
from workers.specs import producer_specs

pytestmark = pytest.mark.django_db(transaction=True)
# Past one acquire round (workers/producer.py ACQUIRE_EVERY_MS), so each window may acquire.
ROUND_MS = 600


@pytest.fixture
async def aredis(redis_client) -> AsyncIterator[aioredis.Redis]:
    client = new_async_redis()
    yield client
    await client.aclose()


def make_producer(aredis: aioredis.Redis, gate: asyncio.Event | None = None) -> Producer:
    """The real producer on the database's catalog, backfilling an hour of history per new
    symbol; with ``gate``, each backfill waits for it before it starts."""
    history = HistoryBackfill(aredis, span_ms=HOUR_MS, keep_ms={}, seed="t", time_scale=DEFAULT_TIME_SCALE)

    async def backfill(spec: SymbolSpec, now: int) -> object:
        if gate is not None:
            await gate.wait()
        return await history(spec, now)

    return Producer(
        ProducerConfig(owner="p1", catalog_refresh_ms=100),
        redis=aredis,
        layer=get_channel_layer(),
        load_catalog=sync_to_async(producer_specs, thread_sensitive=False),
        rng=random.Random(3),
        backfill=backfill,
    )


class Clock:
    """Window times that each reach a new acquire round."""

    def __init__(self) -> None:
        self.now = int(time.time() * 1000)

    def next(self) -> int:
        self.now += ROUND_MS
        return self.now


async def create(code: str, price: str) -> Symbol:
    return await sync_to_async(Symbol.objects.create)(
        symbol=code, name=code, initial_price=Decimal(price), tick_interval_ms=100
    )


async def keys_of(aredis: aioredis.Redis, code: str) -> list[bytes]:
    return [key async for key in aredis.scan_iter(match=f"{market_store.KEY_PREFIX}*{code}*")]


async def live_epoch(producer: Producer, clock: Clock, code: str) -> tuple[str, int]:
    """Run windows (finishing any backfill) until ``code`` ticks; its epoch and first seq."""

    async def ticked() -> tuple[str, int] | None:
        if code in producer.backfilling:
            await producer.backfilling[code]
        entry = (await producer.run_window(clock.next())).get(code)
        return (entry.epoch, entry.first_seq) if entry else None

    return await until(ticked, 20, f"{code} ticking")


async def test_a_recreated_code_starts_a_new_epoch_with_its_own_history(aredis) -> None:
    producer = make_producer(aredis)
    clock = Clock()
    await create("DEL", "100")
    old_epoch, _ = await live_epoch(producer, clock, "DEL")
    # A shock queued for the old series, never applied: it must not reach the new one.
    await asyncio.to_thread(market_store.push_control, sync_redis(), "DEL", {"op": "shock", "fraction": 5.0})

    await sync_to_async(Symbol.objects.filter(symbol="DEL").delete)()
    assert await keys_of(aredis, "DEL") == [], "every key of the deleted symbol is gone after commit"
    for _ in range(3):
        await producer.run_window(clock.next())
    assert "DEL" not in producer.owned
    assert await keys_of(aredis, "DEL") == [], "the producer wrote nothing back"

    recreated = await create("DEL", "50")
    epoch, first_seq = await live_epoch(producer, clock, "DEL")
    assert epoch != old_epoch
    assert first_seq == 1
    # Its own history, at its own price: not the old series' mid, nor five times it.
    assert producer.owned["DEL"].process.mid == pytest.approx(50.0, rel=0.05)
    assert await sync_to_async(Candle.objects.filter(symbol=recreated, interval="1m").count)() >= 59


async def test_a_symbol_deleted_while_its_history_is_written_leaves_nothing(aredis) -> None:
    gate = asyncio.Event()
    producer = make_producer(aredis, gate)
    clock = Clock()
    await create("GONE", "10")
    await producer.run_window(clock.next())
    backfill = producer.backfilling["GONE"]
    await sync_to_async(Symbol.objects.filter(symbol="GONE").delete)()
    gate.set()
    await backfill  # it writes the history's state to Redis after the deletion's purge
    assert await aredis.exists(market_store.state_key("GONE"))
    await producer.run_window(clock.next())
    assert "GONE" not in producer.backfilling
    assert "GONE" not in producer.owned
    assert await keys_of(aredis, "GONE") == []
