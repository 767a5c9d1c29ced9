"""History generation (pure) and the producer's backfill against a real Redis and database."""

from __future__ import annotations

import itertools
import math
import random
import statistics
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from dashboard.market import store as market_store
from dashboard.market.candles import INTERVALS_MS
from dashboard.market.client import new_async_redis, sync_redis
from dashboard.models import Candle, Symbol
from dashboard.selectors import candle_history
from workers.backfill import DAY_MS, HOUR_MS, generate_history
from workers.history import HistoryBackfill
from workers.producer import Producer, ProducerConfig
from workers.simulator import DEFAULT_TIME_SCALE, SECONDS_PER_YEAR, SymbolSpec

END = 1_800_000_123_456
SPEC = SymbolSpec(symbol="BTC-USD", initial_price=67250.0, volatility=0.7, tick_interval_ms=150, jump_intensity=0.5)


def test_a_day_of_every_interval_ending_at_the_initial_price() -> None:
    history = generate_history(SPEC, end_ms=END, seed=1)
    one_minute = history.closed["1m"]
    assert len(one_minute) >= 24 * 60
    assert one_minute[-1].end > END - 60_000
    for interval, size in INTERVALS_MS.items():
        candles = [*history.closed[interval], history.forming[interval]]
        starts = [c.start for c in candles]
        # Contiguous, aligned, every one a valid OHLC; only the last still forming.
        assert all(b - a == size for a, b in itertools.pairwise(starts))
        assert starts[0] % size == 0
        assert candles[-1].start <= END < candles[-1].end
        assert all(c.closed for c in candles[:-1])
        assert not candles[-1].closed
        for c in candles:
            assert 0 < c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
            assert c.volume >= 1
        # The first candle of each interval starts the day before (whole hours).
        assert starts[0] <= END - DAY_MS
    assert history.last_close == SPEC.initial_price
    assert history.mid == pytest.approx(SPEC.initial_price)
    assert history.quote["price"] == SPEC.initial_price
    assert history.quote["bid"] < history.quote["price"] < history.quote["ask"]


def test_coarser_candles_are_the_finer_ones_combined() -> None:
    history = generate_history(SPEC, end_ms=END, seed=2)
    minutes = {c.start: c for c in history.closed["1m"]}
    for hour in history.closed["1h"]:
        inside = [minutes[s] for s in range(hour.start, hour.end, 60_000)]
        assert hour.open == inside[0].open
        assert hour.close == inside[-1].close
        assert hour.high == max(c.high for c in inside)
        assert hour.low == min(c.low for c in inside)
        assert hour.volume == pytest.approx(sum(c.volume for c in inside))


def test_same_seed_same_history_other_seed_other_history() -> None:
    first = generate_history(SPEC, end_ms=END, seed="s", span_ms=2 * HOUR_MS)
    again = generate_history(SPEC, end_ms=END, seed="s", span_ms=2 * HOUR_MS)
    other = generate_history(SPEC, end_ms=END, seed="t", span_ms=2 * HOUR_MS)
    assert first.closed == again.closed
    assert first.forming == again.forming
    assert first.closed["1m"] != other.closed["1m"]


def test_volatility_is_the_symbols_own() -> None:
    """One-minute log returns have the deviation the live simulator gives a minute."""
    calm = SymbolSpec(symbol="EURUSD", initial_price=1.085, precision=5, volatility=0.08)
    wild = SymbolSpec(symbol="DOGE", initial_price=0.1612, precision=5, volatility=1.1)
    for spec in (calm, wild):
        closes = [c.close for c in generate_history(spec, end_ms=END, seed=3).closed["1m"]]
        returns = [math.log(b / a) for a, b in itertools.pairwise(closes)]
        expected = spec.volatility * math.sqrt(60 * DEFAULT_TIME_SCALE / SECONDS_PER_YEAR)
        assert statistics.pstdev(returns) == pytest.approx(expected, rel=0.1)


def test_a_gap_starts_at_the_last_stored_close_and_keeps_only_new_candles() -> None:
    start = END - END % 60_000 - 3 * HOUR_MS - 17 * 60_000  # a stored candle ends on its boundary
    history = generate_history(SPEC, end_ms=END, seed=4, start_ms=start, start_price=61000.0)
    first = history.closed["1m"][0]
    assert first.start == start
    # One step away from the stored close, not a jump.
    assert abs(math.log(first.open / 61000.0)) < 0.01
    assert all(c.start >= start for candles in history.closed.values() for c in candles)


def test_keep_limits_how_far_back_an_interval_goes() -> None:
    history = generate_history(SPEC, end_ms=END, seed=5, keep_ms={"5s": HOUR_MS})
    assert HOUR_MS / 5000 - 1 <= len(history.closed["5s"]) <= HOUR_MS / 5000
    assert len(history.closed["1m"]) >= 24 * 60


def test_coarse_samples_before_fine_from_leave_the_candles_contiguous() -> None:
    fine_from = END - HOUR_MS - (END - HOUR_MS) % 5000  # a whole 5 s candle
    history = generate_history(SPEC, end_ms=END, seed=6, coarse_step_ms=5000, fine_from_ms=fine_from)
    starts = [c.start for c in [*history.closed["5s"], history.forming["5s"]]]
    assert starts == list(range(starts[0], starts[-1] + 5000, 5000))
    # One sample per 5 s candle before ``fine_from``: it opens and closes at that sample.
    coarse = [c for c in history.closed["5s"] if c.start < fine_from]
    fine = [c for c in history.closed["5s"] if c.start >= fine_from]
    assert coarse
    assert all(c.open == c.close == c.high == c.low for c in coarse)
    assert any(c.high > c.low for c in fine)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"end_price": 1.0, "start_price": 2.0}, "not both"),
        ({"step_ms": 3000}, "steps must divide"),
        ({"coarse_step_ms": 7000}, "steps must divide"),
        ({"start_ms": END}, "start is not before end"),
    ],
)
def test_impossible_requests_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_history(SPEC, end_ms=END, **kwargs)


# --- the producer backfills, then continues from the last close ----------------------


@pytest.fixture
async def aredis(redis_client) -> AsyncIterator[aioredis.Redis]:
    client = new_async_redis()
    yield client
    await client.aclose()


@pytest.mark.django_db(transaction=True)
async def test_producer_backfills_new_symbols_then_continues_from_the_last_close(aredis) -> None:
    await sync_to_async(Symbol.objects.create)(
        symbol="AAA", name="Triple A", initial_price=Decimal("100"), tick_interval_ms=100
    )
    specs = [SymbolSpec(symbol="AAA", initial_price=100.0, tick_interval_ms=100)]

    async def load_catalog() -> list[SymbolSpec]:
        return list(specs)

    backfill = HistoryBackfill(
        aredis, span_ms=DAY_MS, keep_ms={"5s": HOUR_MS}, seed="test", time_scale=DEFAULT_TIME_SCALE
    )
    producer = Producer(
        ProducerConfig(owner="p1"),
        redis=aredis,
        layer=get_channel_layer(),
        load_catalog=load_catalog,
        rng=random.Random(1),
        backfill=backfill,
    )
    await producer.run_window(int(time.time() * 1000))
    assert "AAA" in producer.backfilling
    assert "AAA" not in producer.owned
    await producer.backfilling["AAA"]
    stored = market_store.SeriesState.from_redis(await aredis.hgetall(market_store.state_key("AAA")))
    assert stored is not None
    assert stored.seq == 0
    assert stored.mid == pytest.approx(100.0)

    # The series opens on the next acquire round and ticks on from the history's last close.
    windows = []
    deadline = time.monotonic() + 10
    while not windows and time.monotonic() < deadline:
        entries = await producer.run_window(int(time.time() * 1000) + 600)
        windows += [e for s, e in entries.items() if s == "AAA"]
    assert windows, "no live tick after the backfill"
    assert windows[0].epoch == stored.epoch
    assert windows[0].first_seq == 1
    first_price = float(windows[0].piece.split('"price":')[1].split(",")[0])
    assert abs(first_price / 100.0 - 1) < 0.005

    symbol = await sync_to_async(Symbol.objects.get)(symbol="AAA")
    history = await sync_to_async(candle_history)(sync_redis(), symbol, "1m", 1000)
    assert len(history) == 1000
    assert history[-1]["closed"] is False
    assert await sync_to_async(Candle.objects.filter(symbol=symbol, interval="1m").count)() >= 24 * 60

    # A symbol added later gets its own history too.
    await sync_to_async(Symbol.objects.create)(symbol="BBB", name="Double B", initial_price=Decimal("20"))
    specs.append(SymbolSpec(symbol="BBB", initial_price=20.0))
    await producer.refresh_catalog()
    await producer.acquire_free_symbols(int(time.time() * 1000) + 2000)
    assert "BBB" in producer.backfilling
    await producer.backfilling["BBB"]
    await producer.acquire_free_symbols(int(time.time() * 1000) + 3000)
    assert "BBB" in producer.owned
    await producer.release_all()


@pytest.mark.django_db(transaction=True)
async def test_a_lost_series_is_continued_from_the_stored_candles(aredis) -> None:
    """Redis lost the series (no state), the database kept the candles: the gap is filled
    from the last stored close, not restarted at the initial price."""
    symbol = await sync_to_async(Symbol.objects.create)(symbol="CCC", name="C", initial_price=Decimal("50"))
    now = int(time.time() * 1000)
    last_start = now - now % 60_000 - 20 * 60_000
    await sync_to_async(Candle.objects.create)(
        symbol=symbol, interval="1m", start_ms=last_start, open=80, high=81, low=79, close=80.5, volume=10
    )
    backfill = HistoryBackfill(aredis, span_ms=DAY_MS, keep_ms={}, seed="gap", time_scale=DEFAULT_TIME_SCALE)
    history = await backfill(SymbolSpec(symbol="CCC", initial_price=50.0), now)
    first = history.closed["1m"][0]
    assert first.start == last_start + 60_000
    assert abs(math.log(first.open / 80.5)) < 0.01
    # About twenty minutes generated, not a day; the live series continues from there.
    assert 18 <= len(history.closed["1m"]) <= 20
    stored = market_store.SeriesState.from_redis(await aredis.hgetall(market_store.state_key("CCC")))
    assert stored.mid == pytest.approx(history.mid)
    assert await sync_to_async(Candle.objects.filter(symbol=symbol, interval="1m").count)() == 1 + len(
        history.closed["1m"]
    )
