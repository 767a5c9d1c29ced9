"""The simulated order book: coherent with the price process, replayable from diffs, per seed."""

from __future__ import annotations

import ast
import json
import random
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from workers.order_book import BookDiff, BookStep, OrderBook, Trade
from workers.simulator import PriceProcess, SymbolSpec, Tick

CALM = SymbolSpec(symbol="CALM", initial_price=100.0, volatility=0.3)
SPECS = [
    CALM,
    SymbolSpec(symbol="ZERO", initial_price=7.0, precision=0, spread_bps=0.0),
    SymbolSpec(symbol="FINE", initial_price=30_000.0, precision=8, volatility=0.7, spread_bps=1.0),
    SymbolSpec(symbol="WILD", initial_price=50.0, volatility=5.0, jump_intensity=100.0, spread_bps=20.0),
    # Down to the one-tick floor, where a sell has no price beyond the last bid.
    SymbolSpec(symbol="CRASH", initial_price=3.0, precision=0, drift=-2.0, volatility=5.0, jump_intensity=100.0),
    SymbolSpec(symbol="THIN", initial_price=1.2345, precision=4, book_levels=1, book_size=0.5, liquidity=0.1),
    SymbolSpec(symbol="DEEP", initial_price=250.0, book_levels=50, book_size=20_000.0, liquidity=10.0),
]
SEEDS = [1, 2, 3]


@dataclass
class Market:
    """A price process and its book, driven as the producer drives them."""

    spec: SymbolSpec
    seed: int
    time_scale: float = 120.0
    process: PriceProcess = field(init=False)
    book: OrderBook = field(init=False)
    ts: int = 0

    def __post_init__(self) -> None:
        self.process = PriceProcess.start(self.spec, seed=self.seed, time_scale=self.time_scale)
        self.book = OrderBook(self.spec, random.Random(self.seed * 7919), time_scale=self.time_scale)

    def step(self, **tick_changes: object) -> BookStep:
        self.ts += self.spec.tick_interval_ms
        tick = self.process.next_tick(self.ts, self.spec.tick_interval_ms / 1000.0)
        step = self.book.on_tick(replace(tick, **tick_changes), self.process.mid)
        self.process.mid = step.mid
        return step

    def shock(self, fraction: float) -> None:
        self.process.shock(fraction)
        self.book.shock(fraction)


def apply(levels: dict[float, float], changes: list[tuple[float, float]]) -> None:
    for price, size in changes:
        if size == 0:
            levels.pop(price, None)
        else:
            levels[price] = size


def near_touch(book: OrderBook, n: int = 5) -> float:
    return sum(size for _, size in book.bids(n)) + sum(size for _, size in book.asks(n))


def near_touch_over(market: Market, ticks: int) -> list[float]:
    """The size near the touch after each of the next ``ticks`` steps."""
    sizes = []
    for _ in range(ticks):
        market.step()
        sizes.append(near_touch(market.book))
    return sizes


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.symbol)
def test_every_step_keeps_the_invariants(spec: SymbolSpec, seed: int) -> None:
    market = Market(spec, seed, time_scale=100_000.0 if spec.symbol == "CRASH" else 120.0)
    book = market.book
    last_trade_id = 0
    for i in range(400):
        if i == 200:
            market.shock(-0.1)
        u, before = book.u, (book.bids(), book.asks())
        step = market.step()
        bids, asks = book.bids(), book.asks()
        assert 1 <= len(bids) <= spec.book_levels
        assert 1 <= len(asks) <= spec.book_levels
        assert bids[0][0] < asks[0][0], "crossed"
        assert (bids[0][0], asks[0][0]) == (step.tick.bid, step.tick.ask)
        for price, size in bids + asks:
            assert price > 0
            assert size > 0
            assert round(price, spec.precision) == price
        assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
        assert [p for p, _ in asks] == sorted(p for p, _ in asks)
        assert step.trades, "the tick's volume is one order"
        assert sum(t.size for t in step.trades) == pytest.approx(step.tick.volume)
        assert step.tick.price == step.trades[-1].price
        assert len({t.side for t in step.trades}) == 1
        for trade in step.trades:
            assert step.tick.bid <= trade.price <= step.tick.ask
            assert trade.size > 0
            assert trade.ts == step.tick.ts
            assert round(trade.price, spec.precision) == trade.price
            assert trade.id == last_trade_id + 1
            last_trade_id = trade.id
        assert book.trade_id == last_trade_id
        # One update id per tick that changed the book (a trade nearly always does; at the
        # one-tick floor the last bid absorbs a sell whole and may stay as it was).
        assert book.u == u + 1 or (book.u == u and (bids, asks) == before)
        assert step.mid > 0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.symbol)
def test_a_keyframe_and_the_diffs_rebuild_the_book(spec: SymbolSpec, seed: int) -> None:
    market = Market(spec, seed)
    book = market.book
    for _ in range(5):
        market.step()
    # A keyframe taken with changes still untaken: the next diff overlaps it, harmlessly.
    keyframe = book.keyframe()
    assert keyframe.full
    assert keyframe.first_u == keyframe.last_u == book.u
    bids, asks = dict(keyframe.bids), dict(keyframe.asks)
    expected_u = None
    for i in range(300):
        if i == 100:
            market.shock(0.05)
        if i == 150:
            book.halt()
        if i == 160:
            book.retune(replace(spec, book_levels=max(1, spec.book_levels // 2)))
        if not 150 <= i < 155:
            market.step()
        diff = book.take_diff()
        if diff is None:
            assert 150 < i < 155, "only a halted book stays unchanged"
            continue
        assert not diff.full
        if expected_u is None:
            assert diff.first_u <= keyframe.last_u + 1 <= diff.last_u
        else:
            assert diff.first_u == expected_u
        assert diff.last_u == book.u
        expected_u = diff.last_u + 1
        assert [p for p, _ in diff.bids] == sorted((p for p, _ in diff.bids), reverse=True)
        assert [p for p, _ in diff.asks] == sorted(p for p, _ in diff.asks)
        apply(bids, diff.bids)
        apply(asks, diff.asks)
        assert sorted(bids.items(), reverse=True) == book.bids()
        assert sorted(asks.items()) == book.asks()
    assert book.take_diff() is None


def test_halt_empties_the_book_and_the_diff_says_so() -> None:
    market = Market(CALM, 1)
    for _ in range(20):
        market.step()
    book = market.book
    before_bids, before_asks = book.bids(), book.asks()
    book.take_diff()
    u = book.u
    book.halt()
    assert book.bids() == []
    assert book.asks() == []
    assert book.u == u + 1
    diff = book.take_diff()
    assert diff is not None
    assert (diff.first_u, diff.last_u) == (u + 1, u + 1)
    assert diff.bids == [(price, 0.0) for price, _ in before_bids]
    assert diff.asks == [(price, 0.0) for price, _ in before_asks]
    book.halt()
    assert book.u == u + 1, "halting an empty book changes nothing"
    assert book.take_diff() is None
    assert book.keyframe() == BookDiff(first_u=u + 1, last_u=u + 1, bids=[], asks=[], full=True)
    step = market.step()
    assert len(book.bids()) == len(book.asks()) == CALM.book_levels
    assert (book.bids(1)[0][0], book.asks(1)[0][0]) == (step.tick.bid, step.tick.ask)


def test_a_halted_spec_halts_the_book() -> None:
    market = Market(CALM, 1)
    market.step()
    market.book.retune(replace(CALM, halted=True))
    assert market.book.bids() == []
    assert market.book.asks() == []


def test_a_new_precision_clears_the_old_grid() -> None:
    market = Market(CALM, 1)
    for _ in range(10):
        market.step()
    book = market.book
    old = book.keyframe()
    book.take_diff()
    spec = replace(CALM, precision=3)
    book.retune(spec)
    market.process.retune(spec)
    diff = book.take_diff()
    assert diff is not None
    assert diff.bids == [(p, 0.0) for p, _ in old.bids]
    assert diff.asks == [(p, 0.0) for p, _ in old.asks]
    step = market.step()
    assert len(book.bids()) == spec.book_levels
    assert book.asks(2)[1][0] == round(step.tick.ask + 0.001, 3)


def test_levels_step_one_tick_outward_from_the_touch() -> None:
    market = Market(CALM, 3)
    for _ in range(50):
        step = market.step()
        bid, ask = step.tick.bid, step.tick.ask
        assert [p for p, _ in market.book.bids()] == [round(bid - i * 0.01, 2) for i in range(len(market.book.bids()))]
        assert [p for p, _ in market.book.asks()] == [round(ask + i * 0.01, 2) for i in range(len(market.book.asks()))]


def quote(price: float, spread: float = 0.01, volume: float = 1.0, ts: int = 0) -> Tick:
    return Tick(
        symbol="CALM",
        seq=1,
        ts=ts,
        price=price,
        bid=round(price - spread, 2),
        ask=round(price + spread, 2),
        volume=volume,
    )


@pytest.mark.parametrize(("move", "side"), [(0.05, "buy"), (-0.05, "sell")])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_large_order_walks_the_book_and_moves_the_price(move: float, side: str, seed: int) -> None:
    book = OrderBook(CALM, random.Random(seed))
    book.on_tick(quote(100.0), 100.0)
    before = quote(round(100.0 + move, 2), volume=5_000.0, ts=250)
    mid = before.price
    step = book.on_tick(before, mid)
    assert {t.side for t in step.trades} == {side}
    assert len(step.trades) >= 2
    prices = [t.price for t in step.trades]
    # One trade per level, from the touch outward, each step one tick further.
    direction = 1 if side == "buy" else -1
    assert prices == [round(prices[0] + direction * i * 0.01, 2) for i in range(len(prices))]
    assert prices[0] == (before.ask if side == "buy" else before.bid)
    if side == "buy":
        assert step.tick.ask > before.ask
        assert step.tick.bid == before.bid
        assert step.mid > mid
        assert step.tick.price > before.price
    else:
        assert step.tick.bid < before.bid
        assert step.tick.ask == before.ask
        assert step.mid < mid
        assert step.tick.price < before.price
    assert step.mid == pytest.approx((step.tick.bid + step.tick.ask) / 2)


def test_an_order_inside_the_touch_leaves_the_mid_alone() -> None:
    book = OrderBook(CALM, random.Random(1))
    book.on_tick(quote(100.0), 100.0)
    step = book.on_tick(quote(100.01, volume=1.0, ts=250), 100.013)
    assert len(step.trades) == 1
    assert step.mid == 100.013
    assert (step.tick.bid, step.tick.ask) == (100.0, 100.02)


def test_an_order_larger_than_the_whole_side_is_filled_and_leaves_a_side() -> None:
    spec = replace(CALM, book_levels=1)
    book = OrderBook(spec, random.Random(1))
    book.on_tick(quote(100.0), 100.0)
    step = book.on_tick(quote(100.01, volume=10**7, ts=250), 100.01)
    assert sum(t.size for t in step.trades) == 10**7
    assert book.asks()
    assert book.bids()
    assert step.tick.bid < step.tick.ask
    assert [t.id for t in step.trades] == list(range(2, 2 + len(step.trades)))


def test_trade_ids_rise_by_one_across_ticks() -> None:
    market = Market(CALM, 2)
    ids = [t.id for _ in range(300) for t in market.step().trades]
    assert ids == list(range(1, len(ids) + 1))


def test_trade_to_wire_keys_in_order() -> None:
    trade = Trade(id=7, ts=1000, price=100.01, size=3.0, side="buy")
    wire = trade.to_wire("CALM", "e1")
    assert list(wire) == ["symbol", "epoch", "id", "ts", "price", "size", "side"]
    assert wire == {"symbol": "CALM", "epoch": "e1", "id": 7, "ts": 1000, "price": 100.01, "size": 3.0, "side": "buy"}


def test_sizes_are_thin_at_the_touch_and_deeper_away() -> None:
    touch, deep = [], []
    for seed in SEEDS:
        market = Market(CALM, seed)
        for _ in range(300):
            market.step()
            book = market.book
            touch += [book.bids(1)[0][1], book.asks(1)[0][1]]
            deep += [book.bids()[-1][1], book.asks()[-1][1]]
    assert statistics.mean(deep) > 2 * statistics.mean(touch)


def test_size_scales_with_book_size_and_liquidity() -> None:
    def mean_touch(spec: SymbolSpec) -> float:
        return statistics.mean(near_touch_over(Market(spec, 1), 200))

    base = mean_touch(CALM)
    assert mean_touch(replace(CALM, liquidity=2.0)) == pytest.approx(2 * base, rel=0.25)
    assert mean_touch(replace(CALM, book_size=3.0 * CALM.base_volume * 4)) == pytest.approx(4 * base, rel=0.25)
    small = replace(CALM, book_size=0.5)
    market = Market(small, 1)
    market.step()
    assert market.book.size_decimals == 3
    assert all(round(size, 3) == size for _, size in market.book.bids() + market.book.asks())


def test_liquidity_thins_when_the_market_turns_wild() -> None:
    # Jumps are moves far beyond the expected per-tick sigma of the configured volatility.
    wild = replace(CALM, jump_intensity=100.0)
    calm_sizes, wild_sizes = [], []
    for seed in SEEDS:
        calm, turbulent = Market(CALM, seed), Market(wild, seed)
        for _ in range(500):
            calm.step()
            turbulent.step()
            calm_sizes.append(near_touch(calm.book))
            wild_sizes.append(near_touch(turbulent.book))
    assert statistics.mean(wild_sizes) < 0.85 * statistics.mean(calm_sizes)


def test_liquidity_thins_right_after_a_shock_and_recovers() -> None:
    for seed in SEEDS:
        market = Market(CALM, seed)
        calm = statistics.mean(near_touch_over(market, 200))
        market.shock(0.05)
        market.step()
        assert near_touch(market.book) < 0.5 * calm
        later = near_touch_over(market, 600)[-100:]
        assert statistics.mean(later) > 0.8 * calm


def test_a_shock_alone_thins_the_book_it_does_not_move() -> None:
    market = Market(CALM, 1)
    calm = statistics.mean(near_touch_over(market, 200))
    market.book.shock(0.05)
    assert statistics.mean(near_touch_over(market, 10)) < 0.7 * calm


def test_same_seed_same_book() -> None:
    def run(seed: int) -> list[object]:
        market = Market(SPECS[3], seed)
        return [(market.step(), market.book.bids(), market.book.asks()) for _ in range(300)]

    assert run(5) == run(5)
    assert run(5) != run(6)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.symbol)
def test_state_round_trips_through_json_and_continues(spec: SymbolSpec) -> None:
    market = Market(spec, 4)
    for i in range(150):
        if i == 140:
            market.shock(0.02)
        market.step()
    book = market.book
    book.take_diff()
    state = json.loads(json.dumps(book.to_state()))
    assert (state["u"], state["trade_id"]) == (book.u, book.trade_id)
    rng = random.Random()
    rng.setstate(book.rng.getstate())
    restored = OrderBook.from_state(spec, rng, state)
    assert (restored.u, restored.trade_id) == (book.u, book.trade_id)
    assert (restored.bids(), restored.asks()) == (book.bids(), book.asks())
    assert restored.take_diff() is None
    assert restored.keyframe() == book.keyframe()
    # The same ticks give the same book, trades and ids: nothing that matters was left behind.
    for _ in range(100):
        market.ts += spec.tick_interval_ms
        tick = market.process.next_tick(market.ts, spec.tick_interval_ms / 1000.0)
        step = book.on_tick(tick, market.process.mid)
        assert restored.on_tick(tick, market.process.mid) == step
        market.process.mid = step.mid
        assert (restored.bids(), restored.asks(), restored.u) == (book.bids(), book.asks(), book.u)
        assert restored.take_diff() == book.take_diff()


def test_state_from_another_precision_removes_the_old_levels() -> None:
    market = Market(CALM, 1)
    for _ in range(10):
        market.step()
    old = market.book.keyframe()
    state = json.loads(json.dumps(market.book.to_state()))
    restored = OrderBook.from_state(replace(CALM, precision=3), random.Random(1), state)
    assert restored.bids() == []
    assert restored.u == old.last_u + 1
    diff = restored.take_diff()
    assert diff is not None
    assert diff.bids == [(p, 0.0) for p, _ in old.bids]


def test_the_book_is_pure() -> None:
    tree = ast.parse(Path(__file__).resolve().parents[2].joinpath("workers/order_book.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "collections.abc", "dataclasses", "math", "random", "typing", "workers.simulator"}
