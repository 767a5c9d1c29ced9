"""The price simulator: reproducible, positive, spreads respected, volatility as configured."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from workers.simulator import (
    WINDOW_OFFSET_MS,
    PriceProcess,
    SessionStats,
    SymbolSpec,
    next_window_ms,
    on_the_clock,
    quote_prices,
)

SPEC = SymbolSpec(symbol="TEST", initial_price=100.0, precision=2, volatility=0.4, spread_bps=10.0)


def run(spec: SymbolSpec, steps: int, seed: int = 1, dt: float = 0.25, time_scale: float = 120.0) -> list:
    process = PriceProcess.start(spec, seed=seed, time_scale=time_scale)
    return [process.next_tick(ts_ms=i * 250, dt_seconds=dt) for i in range(steps)]


def test_same_seed_same_market() -> None:
    assert run(SPEC, 200, seed=7) == run(SPEC, 200, seed=7)
    assert run(SPEC, 200, seed=7) != run(SPEC, 200, seed=8)


def test_seq_rises_by_one_per_tick() -> None:
    assert [t.seq for t in run(SPEC, 50)] == list(range(1, 51))


def test_realised_volatility_matches_configuration() -> None:
    spec = SymbolSpec(symbol="VOL", initial_price=100.0, precision=6, volatility=0.5, spread_bps=1.0)
    process = PriceProcess.start(spec, seed=42, time_scale=120.0)
    dt = 0.25
    mids = [process.mid]
    for i in range(20_000):
        process.next_tick(ts_ms=i, dt_seconds=dt)
        mids.append(process.mid)
    returns = [math.log(b / a) for a, b in itertools.pairwise(mids)]
    dt_years = dt * 120.0 / (365.25 * 24 * 3600)
    realised = statistics.stdev(returns) / math.sqrt(dt_years)
    assert realised == pytest.approx(0.5, rel=0.03)


def test_prices_never_reach_zero_even_when_crashing() -> None:
    spec = SymbolSpec(symbol="CRASH", initial_price=0.05, precision=2, drift=-2.0, volatility=5.0, jump_intensity=100.0)
    ticks = run(spec, 5000, time_scale=100_000.0)
    assert min(t.price for t in ticks) >= 0.01
    assert min(t.bid for t in ticks) >= 0.01


def test_spread_respected_and_rounded_to_precision() -> None:
    for tick in run(SPEC, 2000):
        assert tick.bid < tick.ask
        assert tick.bid <= tick.price <= tick.ask
        # At least the configured spread (widened to whole ticks), never less.
        assert tick.ask - tick.bid >= tick.price * SPEC.spread_bps / 10_000 - 0.011
        for value in (tick.price, tick.bid, tick.ask):
            assert round(value, 2) == value


@pytest.mark.parametrize(("mid", "precision"), [(100.004, 2), (1.08501, 5), (0.0001, 4), (67250.123, 2)])
def test_quote_prices_are_ordered(mid: float, precision: int) -> None:
    price, bid, ask = quote_prices(mid, 5.0, precision)
    assert 0 < bid < ask
    assert bid <= price <= ask


def test_session_stats_follow_ticks() -> None:
    process = PriceProcess.start(SPEC, seed=3)
    ticks = [process.next_tick(ts_ms=i, dt_seconds=0.25) for i in range(500)]
    prices = [t.price for t in ticks]
    assert process.session.high == max([process.session.open, *prices])
    assert process.session.low == min([process.session.open, *prices])
    assert process.session.volume == sum(t.volume for t in ticks)
    quote = process.quote(ticks[-1])
    assert quote["change"] == round(ticks[-1].price - process.session.open, 2)


def test_session_change_percentage() -> None:
    stats = SessionStats.opening_at(200.0)
    assert stats.change(210.0, 2) == (10.0, 5.0)


def test_shock_moves_price_and_never_below_a_tick() -> None:
    process = PriceProcess(spec=SPEC, rng=random.Random(1), mid=100.0)
    process.shock(0.10)
    assert process.mid == pytest.approx(110.0)
    process.shock(-1.0)
    assert process.mid == pytest.approx(0.01)


def test_halted_spec_is_carried() -> None:
    process = PriceProcess.start(SPEC, seed=1)
    process.retune(SymbolSpec(symbol="TEST", initial_price=100.0, halted=True))
    assert process.spec.halted


def test_on_the_clock_is_the_first_multiple_of_the_interval_at_or_after() -> None:
    assert on_the_clock(1_000, 250) == 1_000
    assert on_the_clock(1_001, 250) == 1_250
    assert on_the_clock(1_249, 250) == 1_250


@pytest.mark.parametrize("ms", [0, 1, 1_000, 1_001, 1_002, 1_003, 1_099, 1_101, 1_102, 1_103])
def test_the_next_window_is_strictly_later_on_the_window_clock_and_within_one_window(ms: int) -> None:
    window = next_window_ms(ms, 100)
    assert (window - WINDOW_OFFSET_MS) % 100 == 0
    assert ms < window <= ms + 100
