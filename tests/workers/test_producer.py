"""The producer against a real Redis and the real channel layer: sequencing, leases, continuity."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from channels.layers import get_channel_layer

from dashboard.market import store as market_store
from dashboard.market.candles import INTERVALS_MS
from dashboard.market.client import new_async_redis, sync_redis
from tests.waiting import until
from workers.producer import Producer, ProducerConfig, now_ms
from workers.simulator import WINDOW_OFFSET_MS, SymbolSpec

SPECS = [
    SymbolSpec(symbol="AAA", initial_price=100.0, tick_interval_ms=50),
    SymbolSpec(symbol="BBB", initial_price=20.0, precision=3, tick_interval_ms=100),
]


@pytest.fixture
async def aredis(redis_client) -> AsyncIterator[aioredis.Redis]:
    client = new_async_redis()
    yield client
    await client.aclose()


def make_producer(aredis: aioredis.Redis, owner: str, specs: list[SymbolSpec] = SPECS, **config) -> Producer:
    async def load_catalog() -> list[SymbolSpec]:
        return list(specs)

    return Producer(
        ProducerConfig(owner=owner, **config),
        redis=aredis,
        layer=get_channel_layer(),
        load_catalog=load_catalog,
        rng=random.Random(1),
    )


async def run_windows(producer: Producer, start: int, count: int, step: int = 100) -> list[dict]:
    return [await producer.run_window(start + i * step) for i in range(count)]


def published_seqs(windows: list[dict], symbol: str) -> list[int]:
    seqs: list[int] = []
    for entries in windows:
        if symbol in entries:
            seqs += [t["seq"] for t in json.loads("[" + entries[symbol].piece + "]")]
    return seqs


async def test_ticks_are_contiguous_and_stored(aredis) -> None:
    producer = make_producer(aredis, "p1")
    windows = await run_windows(producer, 1_000_000, 10)
    seqs = published_seqs(windows, "AAA")
    # 50 ms ticks over 10 windows of 100 ms: two per window after the first.
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= 19
    state = market_store.SeriesState.from_redis(await aredis.hgetall(market_store.state_key("AAA")))
    assert state is not None
    assert state.seq == seqs[-1]
    assert state.quote["price"] > 0
    stored = await aredis.zrange(market_store.ticks_key("AAA"), 0, -1, withscores=True)
    assert [int(score) for _, score in stored] == seqs


async def test_published_batch_reaches_the_market_group(aredis) -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("market", channel)
    producer = make_producer(aredis, "p1")
    await producer.run_window(2_000_000)
    await producer.run_window(2_000_100)
    message = await asyncio.wait_for(layer.receive(channel), timeout=5)
    assert message["type"] == "market.batch"
    assert set(message["ticks"]) <= {"AAA", "BBB"}
    await layer.group_discard("market", channel)


async def test_two_producers_never_tick_the_same_symbol(aredis) -> None:
    first, second = make_producer(aredis, "p1"), make_producer(aredis, "p2")
    windows = []
    for i in range(20):
        now = 3_000_000 + i * 100
        windows.append(await first.run_window(now))
        windows.append(await second.run_window(now))
    for spec in SPECS:
        seqs = published_seqs(windows, spec.symbol)
        assert seqs == list(range(1, len(seqs) + 1)), "one series, no duplicate seq"
    assert set(first.owned).isdisjoint(second.owned)


async def test_takeover_continues_the_same_series(aredis) -> None:
    first = make_producer(aredis, "p1")
    before = published_seqs(await run_windows(first, 4_000_000, 5), "AAA")
    epoch = first.owned["AAA"].epoch
    await first.release_all()
    second = make_producer(aredis, "p2")
    after_windows = await run_windows(second, 4_000_500, 5)
    after = published_seqs(after_windows, "AAA")
    assert after[0] == before[-1] + 1
    assert second.owned["AAA"].epoch == epoch


async def test_lost_state_starts_a_new_epoch(aredis) -> None:
    first = make_producer(aredis, "p1")
    await run_windows(first, 5_000_000, 3)
    epoch = first.owned["AAA"].epoch
    await aredis.flushdb()
    second = make_producer(aredis, "p2")
    after = published_seqs(await run_windows(second, 5_000_300, 3), "AAA")
    assert after[0] == 1
    assert second.owned["AAA"].epoch != epoch


async def test_a_producer_that_lost_its_lease_stores_and_publishes_nothing(aredis) -> None:
    producer = make_producer(aredis, "p1")
    await run_windows(producer, 6_000_000, 3)
    seq_before = int(await aredis.hget(market_store.state_key("AAA"), "seq"))
    await aredis.set(market_store.lease_key("AAA"), "someone-else")
    entries = await producer.run_window(6_000_300)
    assert "AAA" not in entries
    assert "AAA" not in producer.owned
    assert int(await aredis.hget(market_store.state_key("AAA"), "seq")) == seq_before


async def test_halted_symbol_keeps_its_lease_but_does_not_tick(aredis) -> None:
    halted = [SymbolSpec(symbol="AAA", initial_price=100.0, tick_interval_ms=50, halted=True)]
    producer = make_producer(aredis, "p1", specs=halted, lease_ms=1000)
    windows = await run_windows(producer, 7_000_000, 5)
    assert published_seqs(windows, "AAA") == []
    assert await aredis.get(market_store.lease_key("AAA")) == b"p1"


async def test_disabled_symbol_is_released(aredis) -> None:
    specs = list(SPECS)
    producer = make_producer(aredis, "p1", specs=specs, catalog_refresh_ms=100)
    await run_windows(producer, 8_000_000, 2)
    specs.pop(0)  # AAA disabled by an admin
    await run_windows(producer, 8_000_200, 2)
    assert "AAA" not in producer.owned
    assert await aredis.get(market_store.lease_key("AAA")) is None


async def test_run_survives_redis_errors_and_stops_cleanly(aredis) -> None:
    producer = make_producer(aredis, "p1", window_ms=20)
    stop = asyncio.Event()
    task = asyncio.create_task(producer.run(stop))
    await until(lambda: "AAA" in producer.owned, 5, "the producer to own AAA", interval=0.01)
    await aredis.set(market_store.lease_key("AAA"), "intruder")
    await until(lambda: "AAA" not in producer.owned, 5, "the producer to drop the stolen AAA lease", interval=0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await aredis.get(market_store.lease_key("BBB")) is None, "leases released on stop"


async def test_windows_run_on_the_clock_whenever_the_producer_starts(aredis) -> None:
    producer = make_producer(aredis, "p1", window_ms=100)
    seen: list[int] = []
    run_window = producer.run_window

    async def recording(now: int) -> dict:
        seen.append(now)
        return await run_window(now)

    producer.run_window = recording  # type: ignore[method-assign]
    # Started half a window off the clock: a window phase of its own would stay there.
    await until(lambda: 45 <= now_ms() % 100 <= 55, 5, "half a window past the clock", interval=0.001)
    stop = asyncio.Event()
    task = asyncio.create_task(producer.run(stop))
    await until(lambda: len(seen) >= 11, 10, "11 windows", interval=0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    # Each window after the first starts just after its instant on the clock (a late wake-up
    # on a busy machine is allowed for: the median says where the schedule is).
    offsets = [(now - WINDOW_OFFSET_MS) % 100 for now in seen[1:11]]
    assert statistics.median(offsets) < 20, offsets


async def test_closed_candles_are_cached_and_queued_for_the_database(aredis) -> None:
    producer = make_producer(aredis, "p1")
    # Two windows 6 s apart: the 5 s candle of the first closes.
    await producer.run_window(10_000_000)
    await producer.run_window(10_006_000)
    recent = await aredis.lrange(market_store.recent_candles_key("AAA", "5s"), 0, -1)
    assert len(recent) == 1
    candle = json.loads(recent[0])
    assert candle["closed"] is True
    assert candle["ts"] == 10_000_000
    pending = [json.loads(raw) for raw in await aredis.lrange(market_store.PENDING_CANDLES_KEY, 0, -1)]
    assert {(c["symbol"], c["interval"]) for c in pending} == {("AAA", "5s"), ("BBB", "5s")}
    forming = market_store.parse_forming(await aredis.hgetall(market_store.forming_key("AAA")))
    assert set(forming) == set(INTERVALS_MS)


async def test_takeover_continues_the_forming_candle(aredis) -> None:
    first = make_producer(aredis, "p1")
    await run_windows(first, 11_000_000, 5)
    volume_before = first.owned["AAA"].candles.forming["1m"].volume
    await first.release_all()
    second = make_producer(aredis, "p2")
    await second.run_window(11_000_500)
    candle = second.owned["AAA"].candles.forming["1m"]
    assert candle.start == 10_980_000
    assert candle.volume > volume_before


async def test_shock_and_reset_reach_the_owning_producer_within_a_window(aredis) -> None:
    producer = make_producer(aredis, "p1")
    await run_windows(producer, 12_000_000, 2)
    mid = producer.owned["AAA"].process.mid
    await asyncio.to_thread(market_store.push_control, sync_redis(), "AAA", {"op": "shock", "fraction": 0.5})
    await producer.run_window(12_000_200)
    # One tick of noise after the shock: within 1 % of +50 %.
    assert producer.owned["AAA"].process.mid == pytest.approx(mid * 1.5, rel=0.01)
    await asyncio.to_thread(market_store.push_control, sync_redis(), "AAA", {"op": "reset"})
    await producer.run_window(12_000_300)
    assert producer.owned["AAA"].process.mid == pytest.approx(100.0, rel=0.01)


async def test_added_and_edited_symbols_take_effect_without_restart(aredis) -> None:
    specs = [SymbolSpec(symbol="AAA", initial_price=100.0, tick_interval_ms=100)]
    producer = make_producer(aredis, "p1", specs=specs, catalog_refresh_ms=100)
    slow = published_seqs(await run_windows(producer, 13_000_000, 10), "AAA")
    # An admin adds a symbol and makes AAA tick twice as often.
    specs[0] = SymbolSpec(symbol="AAA", initial_price=100.0, tick_interval_ms=50)
    specs.append(SymbolSpec(symbol="NEW", initial_price=5.0, tick_interval_ms=100))
    await aredis.incr(market_store.CATALOG_VERSION_KEY)
    windows = await run_windows(producer, 13_001_000, 10)
    fast = published_seqs(windows, "AAA")
    assert len(fast) >= 1.8 * len(slow)
    assert fast[0] == slow[-1] + 1, "same series, retuned"
    assert published_seqs(windows, "NEW")[:1] == [1]


async def test_leases_spread_evenly_and_rebalance_when_producers_join_and_leave(aredis) -> None:
    specs = [SymbolSpec(symbol=f"S{i:02d}", initial_price=10.0, tick_interval_ms=100) for i in range(12)]

    async def rounds(producers: list[Producer], start: int, count: int) -> int:
        # Acquire rounds come every 500 ms of producer time; each producer takes its turn.
        for i in range(count):
            for producer in producers:
                await producer.run_window(start + i * 500)
        return start + count * 500

    def held(producers: list[Producer]) -> list[int]:
        return [len(p.owned) for p in producers]

    p1, p2, p3 = (make_producer(aredis, f"p{i}", specs=specs) for i in (1, 2, 3))
    now = await rounds([p1], 20_000_000, 2)
    assert held([p1]) == [12], "alone, it produces the whole market"
    now = await rounds([p1, p2], now, 16)
    assert held([p1, p2]) == [6, 6]
    now = await rounds([p1, p2, p3], now, 16)
    assert held([p1, p2, p3]) == [4, 4, 4]
    owners = [p.owned.keys() for p in (p1, p2, p3)]
    assert set().union(*owners) == {s.symbol for s in specs}, "every symbol produced, none twice"
    await p3.release_all()
    now = await rounds([p1, p2], now, 4)
    assert held([p1, p2]) == [6, 6], "a producer that stops hands its share to the others"


async def test_a_clean_stop_is_taken_over_in_the_next_window_not_the_next_acquire_round(aredis) -> None:
    first, second = make_producer(aredis, "p1"), make_producer(aredis, "p2")
    now = 5_000_000
    while not (first.owned and second.owned):  # the market split between the two
        await first.run_window(now)
        await second.run_window(now)
        now += 100
    # Mid-round for the second: its next acquire round is 400 ms away.
    await second.run_window(now)
    leaving = set(first.owned)
    await first.release_all()
    await second.run_window(now + 100)
    assert leaving <= set(second.owned), "the released symbols are taken within one window"


async def test_ticks_fall_on_the_clock_of_their_interval_whenever_a_series_opens(aredis) -> None:
    producer = make_producer(aredis, "p1")
    windows = await run_windows(producer, 7_000_037, 10)  # opened off every symbol's grid
    for spec in SPECS:
        stamps = [t["ts"] for entries in windows if spec.symbol in entries for t in _ticks(entries[spec.symbol])]
        assert stamps, spec.symbol
        assert all(ts % spec.tick_interval_ms == 0 for ts in stamps), (spec.symbol, stamps)
        assert stamps == list(range(stamps[0], stamps[-1] + 1, spec.tick_interval_ms)), "one every interval"
    # A takeover keeps the cadence: the next producer's ticks are on the same instants.
    await producer.release_all()
    second = make_producer(aredis, "p2")
    later = await run_windows(second, 7_001_093, 5)
    assert all(t["ts"] % 50 == 0 for entries in later if "AAA" in entries for t in _ticks(entries["AAA"]))


def _ticks(entry) -> list[dict]:
    return json.loads("[" + entry.piece + "]")
