"""A simulated limit order book and its trades, one per symbol, coherent with the price process.

Pure Python (the standard library and ``workers.simulator`` only), driven by an injected
``random.Random`` so a seed replays the same book exactly.

``PriceProcess`` decides where the market is (the quote); the book decides what trades print:

1. Each tick re-anchors the book on the tick's quote: the best bid is ``tick.bid``, the best ask
   ``tick.ask``, and each side holds a level at every tick step outward, ``spec.book_levels`` deep.
   Levels that stay keep their size; new levels get a fresh random size.
2. The tick's volume is one aggressive order, a buy when the process's mid rose (a sell when it
   fell). It fills against the opposite side from the touch and walks as many levels as it
   needs, one ``Trade`` per level filled. The printed tick shows
   the book's top after the walk and the last fill as its price; a walk that moved the touch
   moves the mid too, and the price process continues from there (``BookStep.mid``).
3. Every call that changed the book adds 1 to the update id ``u`` and records the changed
   levels, so that a keyframe plus the successive ``take_diff()``s rebuild the book exactly.

Size model. A level ``d`` steps from the touch has the target size
``touch * (1 + DEPTH_SLOPE * d) * thinning`` where ``touch`` is ``spec.book_size`` (or
``TOUCH_VOLUMES * spec.base_volume``) times ``spec.liquidity``, and ``thinning`` (at most 1) falls
when the price moves more than its expected per-tick sigma (smoothed) and after ``shock()``.
Actual sizes are that target times mean-one lognormal noise; a few random levels drift towards
a fresh draw every tick, and a level far above its target is cut back (makers pull quotes when
the market turns wild).

Sizes are rounded to a lot that depends on the touch size (``size_decimals``): whole units for a
touch of 100 or more, two significant digits below the touch's order of magnitude otherwise.
The tick's volume (whole units) is therefore always a whole number of lots.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from workers.simulator import DEFAULT_TIME_SCALE, SECONDS_PER_YEAR, SymbolSpec, Tick

BUY = "buy"
SELL = "sell"
# With book_size 0 the typical size at the touch is this many times the mean tick volume, so an
# ordinary print fills at the touch and only the large prints of busy moments walk the book.
TOUCH_VOLUMES = 3.0
# Real books are thin at the touch and deeper away: each step out adds this much of the touch size.
DEPTH_SLOPE = 0.15
# Deviation of the lognormal noise on a level's size (its mean is kept at 1).
SIZE_NOISE = 0.5
# Replenishment: after each replenished level another follows with this probability, so about
# P / (1 - P) levels a side change size each tick without any trade touching them.
REPLENISH_MORE = 0.6
# A replenished level moves this far towards a fresh draw: books change gradually, not at once.
REPLENISH_WEIGHT = 0.5
# A level above this many times its current target is cut back to a fresh draw.
PULL_ABOVE = 2.5
# A level eaten below this share of its target is refilled to a fresh draw with this chance a
# tick: on a coarse grid the touch stays put for many ticks, and a queue that is never refilled
# would be swept by a run of ordinary prints, moving the price far more than the process does.
REFILL_BELOW, REFILL_CHANCE = 0.25, 0.3
# Volatility: |log return| / expected per-tick sigma is smoothed with this weight per tick; a
# calm Brownian market averages E|z| = sqrt(2/pi), and every unit of smoothed stress above calm
# takes VOL_THINNING more off the book (1 / (1 + VOL_THINNING * excess)).
STRESS_WEIGHT = 0.1
CALM_STRESS = math.sqrt(2.0 / math.pi)
VOL_THINNING = 0.5
# One jump or shock counts as at most this many sigmas, so the book recovers within tens of ticks.
MAX_Z = 50.0
# A vanishing volatility (0 in the admin) still leaves drift and rounding: never divide by 0.
MIN_SIGMA = 1e-5
# shock(fraction) thins the book by SHOCK_BASE + SHOCK_PER_MOVE * |fraction| (at most
# MAX_SHOCK), halving every SHOCK_HALF_LIFE_MS of tick time.
SHOCK_BASE, SHOCK_PER_MOVE, MAX_SHOCK, SHOCK_HALF_LIFE_MS = 0.4, 4.0, 0.9, 3000
# However thin the market, the book keeps this share of its calm size.
MIN_THINNING = 0.1
# An order walks at most this many times book_levels levels; beyond, the rest fills at the last
# level reached (hidden liquidity), so a huge print cannot take the price anywhere.
MAX_WALK_BOOKS = 2
MAX_SIZE_DECIMALS = 8
# Volume arithmetic is rounded here so float fuzz never leaves a 1e-17 remainder to fill.
VOLUME_DECIMALS = 8

T = TypeVar("T")


@dataclass(frozen=True)
class Trade:
    """One fill of an aggressive order against one book level."""

    id: int
    ts: int
    price: float
    size: float
    side: str

    def to_wire(self, symbol: str, epoch: str) -> dict[str, object]:
        return {
            "symbol": symbol,
            "epoch": epoch,
            "id": self.id,
            "ts": self.ts,
            "price": self.price,
            "size": self.size,
            "side": self.side,
        }


@dataclass(frozen=True)
class BookDiff:
    """Levels changed over update ids ``first_u``..``last_u`` (size 0: removed), or the whole book."""

    first_u: int
    last_u: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    full: bool = False


@dataclass(frozen=True)
class BookStep:
    """What one tick did: the tick as printed, its trades, and the mid the price process continues from."""

    tick: Tick
    trades: list[Trade]
    mid: float


class OrderBook:
    """The order book of one symbol: price levels on the tick grid, a change log, a trade counter."""

    def __init__(
        self,
        spec: SymbolSpec,
        rng: random.Random,
        *,
        u: int = 0,
        trade_id: int = 0,
        time_scale: float = DEFAULT_TIME_SCALE,
    ) -> None:
        self.spec = spec
        self.rng = rng
        self.u = u
        self.trade_id = trade_id
        self.time_scale = time_scale
        # Levels keyed by whole ticks (price * 10**precision): exact, where float prices are not.
        self._bids: dict[int, float] = {}
        self._asks: dict[int, float] = {}
        # The change log, keyed by rounded price so a precision change can still name old levels.
        self._bid_log: dict[float, float] = {}
        self._ask_log: dict[float, float] = {}
        self._taken_u = u
        self._changed = False
        # The side of the last order; the mid the process continued from (tick test, volatility).
        self._last_side = BUY
        self._last_mid: float | None = None
        # The shock state behind the thinning factor, and the tick time it decays with.
        self._last_ts: int | None = None
        self._stress = CALM_STRESS
        self._shock = 0.0

    # -- reading -------------------------------------------------------------------------------

    @property
    def size_decimals(self) -> int:
        """Decimals every size is rounded to (0: whole units)."""
        magnitude = math.floor(math.log10(max(self._touch_base(), 1e-12)))
        return max(0, min(MAX_SIZE_DECIMALS, 2 - magnitude))

    @property
    def thinning(self) -> float:
        """The share of its calm size the book currently aims for, in [MIN_THINNING, 1]."""
        excess = max(0.0, self._stress / CALM_STRESS - 1.0)
        return max(MIN_THINNING, (1.0 - self._shock) / (1.0 + VOL_THINNING * excess))

    def bids(self, n: int | None = None) -> list[tuple[float, float]]:
        """Bid levels (price, size), best (highest) first."""
        keys = sorted(self._bids, reverse=True)[:n]
        return [(self._price(k), self._bids[k]) for k in keys]

    def asks(self, n: int | None = None) -> list[tuple[float, float]]:
        """Ask levels (price, size), best (lowest) first."""
        keys = sorted(self._asks)[:n]
        return [(self._price(k), self._asks[k]) for k in keys]

    def keyframe(self) -> BookDiff:
        return BookDiff(first_u=self.u, last_u=self.u, bids=self.bids(), asks=self.asks(), full=True)

    def take_diff(self) -> BookDiff | None:
        if self.u == self._taken_u:
            return None
        diff = BookDiff(
            first_u=self._taken_u + 1,
            last_u=self.u,
            bids=sorted(self._bid_log.items(), reverse=True),
            asks=sorted(self._ask_log.items()),
        )
        self._bid_log = {}
        self._ask_log = {}
        self._taken_u = self.u
        return diff

    # -- admin events --------------------------------------------------------------------------

    def halt(self) -> None:
        """Trading stops: every level is removed; the next ``on_tick`` rebuilds the book."""
        self._clear()
        self._commit()

    def shock(self, fraction: float) -> None:
        """An admin shock of ``fraction`` (0.05 = +5 %): makers pull liquidity for a while.

        The book itself changes on the next ``on_tick``, which cuts levels to the thinner target.
        """
        self._shock = max(self._shock, min(MAX_SHOCK, SHOCK_BASE + SHOCK_PER_MOVE * abs(fraction)))

    def retune(self, spec: SymbolSpec) -> None:
        """Apply edited parameters; sizes follow gradually, depth on the next tick.

        A new precision is a new grid: the old levels are removed at once (recorded, ``u`` + 1).
        A halted spec halts the book.
        """
        if spec.precision != self.spec.precision:
            self._clear()
        self.spec = spec
        if spec.halted:
            self._clear()
        self._commit()

    # -- the tick ------------------------------------------------------------------------------

    def on_tick(self, tick: Tick, mid: float) -> BookStep:
        """Re-anchor the book on ``tick``'s quote, fill its volume, and print what happened.

        ``mid`` is the process's unrounded mid after this tick; the producer continues the process
        from the returned ``BookStep.mid`` so that a walk of the book moves the price.
        """
        self._observe(tick, mid)
        bid_k, ask_k = self._anchor(tick)
        side = self._aggressor(mid)
        trades = self._fill(side, tick.volume, tick.ts)
        best_bid, best_ask = max(self._bids), min(self._asks)
        moved = best_bid != bid_k or best_ask != ask_k
        printed = replace(
            tick,
            bid=self._price(best_bid),
            ask=self._price(best_ask),
            price=trades[-1].price if trades else tick.price,
        )
        if moved:
            mid = (best_bid + best_ask) / 2.0 / 10**self.spec.precision
        self._last_mid = mid
        self._commit()
        return BookStep(tick=printed, trades=trades, mid=mid)

    def _observe(self, tick: Tick, mid: float) -> None:
        """Update the volatility stress and decay the shock: together they set ``thinning``."""
        spec = self.spec
        # The process steps one tick interval per tick whatever the wall clock did (halts, catch-up).
        dt_years = spec.tick_interval_ms / 1000.0 * self.time_scale / SECONDS_PER_YEAR
        sigma = max(spec.volatility * math.sqrt(dt_years), MIN_SIGMA)
        z = CALM_STRESS if self._last_mid is None else min(abs(math.log(mid / self._last_mid)) / sigma, MAX_Z)
        self._stress += STRESS_WEIGHT * (z - self._stress)
        if self._last_ts is not None and self._shock > 0.0:
            elapsed = max(0, tick.ts - self._last_ts)
            self._shock *= 0.5 ** (elapsed / SHOCK_HALF_LIFE_MS)
            if self._shock < 1e-3:
                self._shock = 0.0
        self._last_ts = tick.ts

    def _anchor(self, tick: Tick) -> tuple[int, int]:
        """Move the touch to the tick's quote and keep ``book_levels`` contiguous levels a side."""
        scale = 10**self.spec.precision
        bid_k = max(round(tick.bid * scale), 1)
        ask_k = max(round(tick.ask * scale), bid_k + 1)
        levels = max(1, self.spec.book_levels)
        # Bids stop at one tick: a price of 0 would be no price.
        wanted_bids = range(bid_k, max(bid_k - levels, 0), -1)
        wanted_asks = range(ask_k, ask_k + levels)
        self._keep(self._bids, self._bid_log, wanted_bids, bid_k)
        self._keep(self._asks, self._ask_log, wanted_asks, ask_k)
        return bid_k, ask_k

    def _keep(self, side: dict[int, float], log: dict[float, float], wanted: range, touch: int) -> None:
        for k in [k for k in side if k not in wanted]:
            self._set(side, log, k, 0.0)
        thinning = self.thinning
        existing = []
        for k in wanted:
            distance = abs(k - touch)
            if k in side:
                existing.append(k)
                target = self._target(distance, thinning)
                # Makers pull quotes far above what the market now supports (a shock, a jump,
                # or the touch arriving at what used to be a deep level), and refill eaten ones.
                if side[k] > PULL_ABOVE * target or (
                    side[k] < REFILL_BELOW * target and self.rng.random() < REFILL_CHANCE
                ):
                    self._set(side, log, k, self._draw(target))
            else:
                self._set(side, log, k, self._draw(self._target(distance, thinning)))
        # Replenishment: a few levels drift towards a fresh size, as orders come and go.
        while existing and self.rng.random() < REPLENISH_MORE:
            k = existing[self.rng.randrange(len(existing))]
            fresh = self._draw(self._target(abs(k - touch), thinning))
            self._set(side, log, k, self._round_size(side[k] + REPLENISH_WEIGHT * (fresh - side[k])))

    def _aggressor(self, mid: float) -> str:
        """The tick test on the process's own move: mid up → buy, down → sell.

        It compares the unrounded mid with the one the process continued from, not the printed
        price with the previous fill: fills print at the touch and the process near the mid, so
        that comparison flips on nearly every tick (bid-ask bounce); and a walk's own move would
        count as "up" for the next tick, so buys would beget buys and ratchet the price away from
        the process. A mid that did not move at all (volatility and drift 0) has no direction:
        the side is a coin toss, where keeping the previous side would ratchet the same way.
        """
        if self._last_mid is None or mid == self._last_mid:
            self._last_side = BUY if self.rng.random() < 0.5 else SELL
        else:
            self._last_side = BUY if mid > self._last_mid else SELL
        return self._last_side

    def _fill(self, side: str, volume: float, ts: int) -> list[Trade]:
        """Walk the opposite side from the touch until ``volume`` is filled; one trade per level."""
        book, log, outward = (self._asks, self._ask_log, 1) if side == BUY else (self._bids, self._bid_log, -1)
        remaining = round(volume, VOLUME_DECIMALS)
        trades: list[Trade] = []
        max_walk = MAX_WALK_BOOKS * max(1, self.spec.book_levels)
        while remaining > 0:
            k = min(book) if side == BUY else max(book)
            size = book[k]
            beyond = k + outward
            # The rest fills here when the walk is long enough or there is no price beyond (1 tick).
            last_stop = len(trades) + 1 >= max_walk or (beyond < 1 and len(book) == 1)
            if remaining < size or last_stop:
                fill = remaining
                if remaining < size:
                    self._set(book, log, k, self._round_size(size - remaining))
            else:
                fill = size
                self._set(book, log, k, 0.0)
                if not book:
                    # The whole visible side is gone: fresh liquidity arrives one tick further out.
                    self._set(book, log, beyond, self._draw(self._target(len(trades) + 1, self.thinning)))
            self.trade_id += 1
            trades.append(Trade(id=self.trade_id, ts=ts, price=self._price(k), size=fill, side=side))
            remaining = round(remaining - fill, VOLUME_DECIMALS)
        return trades

    # -- sizes ---------------------------------------------------------------------------------

    def _touch_base(self) -> float:
        spec = self.spec
        touch = spec.book_size if spec.book_size > 0 else TOUCH_VOLUMES * spec.base_volume
        return touch * spec.liquidity

    def _target(self, distance: int, thinning: float) -> float:
        return self._touch_base() * (1.0 + DEPTH_SLOPE * distance) * thinning

    def _draw(self, target: float) -> float:
        noise = math.exp(self.rng.gauss(-0.5 * SIZE_NOISE * SIZE_NOISE, SIZE_NOISE))
        return self._round_size(target * noise)

    def _round_size(self, size: float) -> float:
        decimals = self.size_decimals
        # Never 0: a level of size 0 is a removed level.
        return max(round(size, decimals), 10.0**-decimals)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _price(self, k: int) -> float:
        return round(k / 10**self.spec.precision, self.spec.precision)

    def _set(self, side: dict[int, float], log: dict[float, float], k: int, size: float) -> None:
        """Set (size > 0) or remove (size 0) a level, recording it in the change log."""
        if size > 0:
            if side.get(k) == size:
                return
            side[k] = size
        elif side.pop(k, None) is None:
            return
        log[self._price(k)] = size
        self._changed = True

    def _clear(self) -> None:
        for side, log in ((self._bids, self._bid_log), (self._asks, self._ask_log)):
            for k in list(side):
                self._set(side, log, k, 0.0)

    def _commit(self) -> None:
        """One update id for everything one call changed."""
        if self._changed:
            self.u += 1
            self._changed = False

    # -- persistence ---------------------------------------------------------------------------

    def to_state(self) -> dict[str, object]:
        """Everything needed to continue the book elsewhere, JSON-able (not the rng, not the log)."""
        return {
            "u": self.u,
            "trade_id": self.trade_id,
            "precision": self.spec.precision,
            "bids": [list(level) for level in self.bids()],
            "asks": [list(level) for level in self.asks()],
            "last_side": self._last_side,
            "last_mid": self._last_mid,
            "last_ts": self._last_ts,
            "stress": self._stress,
            "shock": self._shock,
        }

    @classmethod
    def from_state(
        cls,
        spec: SymbolSpec,
        rng: random.Random,
        state: Mapping[str, Any],
        *,
        time_scale: float = DEFAULT_TIME_SCALE,
    ) -> OrderBook:
        """Continue a book from ``to_state()``: same u, trade ids and levels.

        Stored under another precision, the old levels are removed (recorded, ``u`` + 1) so that a
        client holding them learns it from the next diff; the next tick rebuilds the book.
        """
        book = cls(spec, rng, u=int(state["u"]), trade_id=int(state["trade_id"]), time_scale=time_scale)
        stored = int(state.get("precision", spec.precision))
        scale = 10**stored
        for side, key in ((book._bids, "bids"), (book._asks, "asks")):
            for price, size in state[key]:
                side[round(float(price) * scale)] = float(size)
        if stored != spec.precision:
            # Name the old levels on their old grid, then move to the new one.
            book.spec = replace(spec, precision=stored)
            book._clear()
            book.spec = spec
            book._commit()
        book._last_side = SELL if state.get("last_side") == SELL else BUY
        book._last_mid = _optional(float, state.get("last_mid"))
        book._last_ts = _optional(int, state.get("last_ts"))
        book._stress = float(state.get("stress", CALM_STRESS))
        book._shock = float(state.get("shock", 0.0))
        return book


def _optional(convert: Callable[[Any], T], value: object) -> T | None:
    return None if value is None else convert(value)
