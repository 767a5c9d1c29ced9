"""Price simulation: geometric Brownian motion with jumps, spreads, volume, session stats.

Pure Python, no Django and no Channels: everything here is driven by a seedable
``random.Random`` so tests can replay a market exactly.

Time runs faster in the simulated market than on the wall clock (``time_scale``
simulated seconds per real second) so that a realistic annual volatility still
moves a displayed price several times a second.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

SECONDS_PER_YEAR = 365.25 * 24 * 3600
SECONDS_PER_DAY = 24 * 3600
# Jump sizes are drawn from a normal distribution of log returns with this deviation.
JUMP_SIGMA = 0.02
DEFAULT_TIME_SCALE = 120.0


@dataclass(frozen=True)
class SymbolSpec:
    """What the simulator needs to know about one symbol (mirrors the admin's fields)."""

    symbol: str
    initial_price: float
    precision: int = 2
    drift: float = 0.0
    volatility: float = 0.3
    jump_intensity: float = 0.0
    spread_bps: float = 5.0
    tick_interval_ms: int = 250
    base_volume: float = 100.0
    halted: bool = False
    # The simulated order book (workers.order_book): levels per side, the typical size at the
    # touch (0: derived from base_volume) and a multiplier on every level's size.
    book_levels: int = 20
    book_size: float = 0.0
    liquidity: float = 1.0

    @property
    def tick_size(self) -> float:
        return 10.0 ** (-self.precision)


@dataclass
class SessionStats:
    """Open, high, low and cumulative volume since the session opened."""

    open: float
    high: float
    low: float
    volume: float = 0.0

    @classmethod
    def opening_at(cls, price: float) -> SessionStats:
        return cls(open=price, high=price, low=price)

    def update(self, price: float, volume: float) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.volume += volume

    def change(self, price: float, precision: int) -> tuple[float, float]:
        """Absolute and percentage change of ``price`` against the session open."""
        change = round(price - self.open, precision)
        pct = round((price / self.open - 1.0) * 100.0, 2) if self.open else 0.0
        return change, pct


@dataclass(frozen=True)
class Tick:
    """One trade print of a symbol: the unit the producer sequences and broadcasts."""

    symbol: str
    seq: int
    ts: int
    price: float
    bid: float
    ask: float
    volume: float

    def to_wire(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "seq": self.seq,
            "ts": self.ts,
            "price": self.price,
            "bid": self.bid,
            "ask": self.ask,
            "volume": self.volume,
        }


def round_to_tick(value: float, precision: int) -> float:
    return round(value, precision)


def quote_prices(mid: float, spread_bps: float, precision: int) -> tuple[float, float, float]:
    """Displayed price, bid and ask for an unrounded ``mid``.

    The spread is widened outwards to whole ticks, never below one tick, and no
    price is ever below one tick: a rounded price of 0 would be a lie.
    """
    tick = 10.0 ** (-precision)
    price = max(round_to_tick(mid, precision), tick)
    half = mid * spread_bps / 20_000.0
    bid = math.floor(round((mid - half) / tick, 6)) * tick
    ask = math.ceil(round((mid + half) / tick, 6)) * tick
    bid = max(round(bid, precision), tick)
    ask = round(ask, precision)
    if ask <= bid:
        ask = round(bid + tick, precision)
    return price, bid, ask


def on_the_clock(ms: int, interval_ms: int) -> int:
    """The first instant at or after ``ms`` on the clock of a symbol: a multiple of its interval.

    Every symbol of one interval ticks on the same instants, whoever opened it and when, so
    their ticks meet in the same producer windows: a dashboard gets fewer, fuller frames (50
    symbols of 250 ms in 100 ms windows: 4 frames a second instead of up to 10, and a frame
    costs the server and the browser about the same whatever it carries), with no tick later
    than its own time. A takeover continues the same cadence.
    """
    return -(-ms // interval_ms) * interval_ms


# A window runs this long after its instant on the clock, so a timer firing a little early
# (the event loop's clock is not the wall clock) still finds the ticks due at that instant.
WINDOW_OFFSET_MS = 2


def next_window_ms(ms: int, window_ms: int) -> int:
    """The instant after ``ms`` of the next producer window: a multiple of ``window_ms``, plus the offset.

    Windows on the wall clock, like the ticks, publish a tick due on the clock within
    ``window_ms`` of its time on every producer (a window phase of its own would add up to a
    window to every tick), and a producer that fell behind comes back to the same instants
    instead of a new phase.
    """
    return ((ms - WINDOW_OFFSET_MS) // window_ms + 1) * window_ms + WINDOW_OFFSET_MS


@dataclass
class PriceProcess:
    """The evolving state of one symbol: unrounded mid, session stats and sequence."""

    spec: SymbolSpec
    rng: random.Random
    mid: float
    seq: int = 0
    session: SessionStats = field(default=None)  # type: ignore[assignment]
    time_scale: float = DEFAULT_TIME_SCALE

    def __post_init__(self) -> None:
        if self.mid <= 0:
            raise ValueError("mid price must be positive")
        if self.session is None:
            self.session = SessionStats.opening_at(round_to_tick(self.mid, self.spec.precision))

    @classmethod
    def start(
        cls, spec: SymbolSpec, *, seed: int | None = None, time_scale: float = DEFAULT_TIME_SCALE
    ) -> PriceProcess:
        return cls(spec=spec, rng=random.Random(seed), mid=spec.initial_price, time_scale=time_scale)

    def retune(self, spec: SymbolSpec) -> None:
        """Apply edited parameters (volatility, spread, ...) without restarting the series."""
        self.spec = spec

    def shock(self, fraction: float) -> None:
        """Move the mid by ``fraction`` (0.05 = +5 %), never to or below zero."""
        self.mid = max(self.mid * (1.0 + fraction), self.spec.tick_size)

    def log_return(self, dt_seconds: float) -> float:
        """One step of GBM with Poisson jumps over ``dt_seconds`` of wall-clock time."""
        spec = self.spec
        dt_years = dt_seconds * self.time_scale / SECONDS_PER_YEAR
        sigma = spec.volatility
        step = (spec.drift - 0.5 * sigma * sigma) * dt_years + sigma * math.sqrt(dt_years) * self.rng.gauss(0.0, 1.0)
        if spec.jump_intensity > 0:
            dt_days = dt_seconds * self.time_scale / SECONDS_PER_DAY
            if self.rng.random() < 1.0 - math.exp(-spec.jump_intensity * dt_days):
                step += self.rng.gauss(0.0, JUMP_SIGMA)
        return step

    def next_tick(self, ts_ms: int, dt_seconds: float) -> Tick:
        """Advance the price by ``dt_seconds`` and print the next tick at ``ts_ms``."""
        spec = self.spec
        r = self.log_return(dt_seconds)
        # exp() keeps the mid positive; the floor guards against underflow to 0.
        self.mid = max(self.mid * math.exp(r), spec.tick_size * 0.5)
        price, bid, ask = quote_prices(self.mid, spec.spread_bps, spec.precision)
        # Busier prints on bigger moves, as in real markets.
        activity = 1.0 + min(abs(r) / max(spec.volatility, 1e-9) * 50.0, 20.0)
        volume = float(max(1, round(self.rng.expovariate(1.0 / spec.base_volume) * activity)))
        self.session.update(price, volume)
        self.seq += 1
        return Tick(symbol=spec.symbol, seq=self.seq, ts=ts_ms, price=price, bid=bid, ask=ask, volume=volume)

    def quote(self, last: Tick) -> dict[str, object]:
        """The snapshot quote: last tick plus session statistics."""
        change, change_pct = self.session.change(last.price, self.spec.precision)
        return {
            "price": last.price,
            "bid": last.bid,
            "ask": last.ask,
            "volume": self.session.volume,
            "ts": last.ts,
            "open": self.session.open,
            "high": self.session.high,
            "low": self.session.low,
            "change": change,
            "change_pct": change_pct,
        }
