"""Candle aggregation: kline semantics, OHLC consistent with the ticks."""

from __future__ import annotations

import random

import pytest

from dashboard.market.candles import INTERVALS_MS, Candle, CandleBook, merge_history, roll_up
from workers.simulator import PriceProcess, SymbolSpec


def test_candle_opens_closes_on_interval_boundaries() -> None:
    book = CandleBook(["5s"])
    assert book.add(10_000, 1.0, 1) == []
    assert book.add(12_000, 3.0, 2) == []
    assert book.add(14_999, 2.0, 1) == []
    closed = book.add(15_000, 5.0, 4)
    assert [c.to_wire() for c in closed] == [
        {"ts": 10_000, "open": 1.0, "high": 3.0, "low": 1.0, "close": 2.0, "volume": 4, "closed": True}
    ]
    assert book.forming["5s"].to_wire() == {
        "ts": 15_000,
        "open": 5.0,
        "high": 5.0,
        "low": 5.0,
        "close": 5.0,
        "volume": 4,
        "closed": False,
    }


def test_clock_closes_a_candle_without_ticks() -> None:
    book = CandleBook(["5s", "1m"])
    book.add(1_000, 1.0, 1)
    assert [c.interval for c in book.close_due(4_999)] == []
    assert [c.interval for c in book.close_due(5_000)] == ["5s"]
    assert list(book.forming) == ["1m"]


def test_ohlc_consistent_with_simulated_ticks() -> None:
    spec = SymbolSpec(symbol="X", initial_price=50.0, volatility=0.8, tick_interval_ms=100)
    process = PriceProcess(spec=spec, rng=random.Random(9), mid=50.0)
    book = CandleBook()
    ticks, closed = [], []
    # 400 ms apart: 10,000 ticks span more than an hour, so every interval closes a candle.
    for i in range(10_000):
        tick = process.next_tick(ts_ms=i * 400, dt_seconds=0.4)
        ticks.append(tick)
        closed += book.add(tick.ts, tick.price, tick.volume)
    assert {c.interval for c in closed} == set(INTERVALS_MS)
    for candle in closed:
        inside = [t for t in ticks if candle.start <= t.ts < candle.end]
        assert candle.open == inside[0].price
        assert candle.close == inside[-1].price
        assert candle.high == max(t.price for t in inside)
        assert candle.low == min(t.price for t in inside)
        assert candle.volume == pytest.approx(sum(t.volume for t in inside))
        assert candle.low <= min(candle.open, candle.close) <= max(candle.open, candle.close) <= candle.high


def test_merge_history_prefers_later_sources_and_limits() -> None:
    old = [Candle("1m", start, 1, 1, 1, 1, 1, closed=True) for start in (0, 60_000, 120_000)]
    newer = [Candle("1m", 120_000, 2, 2, 2, 2, 2, closed=True), Candle("1m", 180_000, 3, 3, 3, 3, 3)]
    merged = merge_history(old, newer, limit=3)
    assert [c.start for c in merged] == [60_000, 120_000, 180_000]
    assert merged[1].open == 2


def test_wire_round_trip() -> None:
    candle = Candle("5m", 300_000, 1.5, 2.5, 1.0, 2.0, 10.0, closed=True)
    assert Candle.from_wire("5m", candle.to_wire()) == candle


def test_roll_up_combines_finer_candles_and_marks_the_partial_one_forming() -> None:
    fine = [Candle("1m", i * 60_000, 10 + i, 20 + i, 5, 11 + i, 1.0, closed=True) for i in range(7)]
    fine[-1].closed = False
    coarse = roll_up(fine, "5m")
    assert [c.start for c in coarse] == [0, 300_000]
    assert (coarse[0].open, coarse[0].high, coarse[0].low, coarse[0].close) == (10, 24, 5, 15)
    assert coarse[0].volume == 5.0
    assert coarse[0].closed
    assert not coarse[1].closed
