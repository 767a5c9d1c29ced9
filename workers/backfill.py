"""A plausible past for a symbol: candles generated from its own simulation parameters.

Pure Python, no Django and no Channels. The path is the simulator's own model
(``PriceProcess.log_return``: GBM with jumps at the symbol's volatility, drift, jump
intensity and the market's time scale), sampled every ``step_ms`` and aggregated into
candles of every interval in ``INTERVALS_MS``. The same seed and end time give the same
history.

The path is anchored at one end:

* ``end_price`` (a symbol's first start): the history ends exactly at that price, so the
  live series opens where an admin said the symbol trades now;
* ``start_price`` (filling a gap after the stored history): it starts at the last stored
  close, so the chart has no jump where the stored history stops.

Either way the live series continues from ``History.mid`` with the candles of
``History.forming``, exactly as a producer continues another producer's series.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dashboard.market.candles import INTERVALS_MS, Candle, roll_up
from workers.simulator import (
    DEFAULT_TIME_SCALE,
    JUMP_SIGMA,
    SECONDS_PER_DAY,
    SECONDS_PER_YEAR,
    SessionStats,
    SymbolSpec,
    quote_prices,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
FINEST = min(INTERVALS_MS, key=INTERVALS_MS.__getitem__)
# One sample a second: five per 5 s candle, sixty per minute, so highs and lows look like a
# market's, while a day of one symbol stays well under a second of CPU.
DEFAULT_STEP_MS = 1000
# Busier prints on bigger moves, with the live simulator's figures (PriceProcess.next_tick):
# a move of one sigma makes a print this many times busier...
ACTIVITY_PER_SIGMA = 50.0
# ...up to this much busier, so one jump does not print a day's volume;
MAX_EXTRA_ACTIVITY = 20.0
# and a symbol configured with no volatility does not divide by zero.
MIN_VOLATILITY = 1e-9


@dataclass(frozen=True)
class History:
    """Generated candles of one symbol and where its live series continues from."""

    symbol: str
    # Closed candles per interval, oldest first.
    closed: dict[str, list[Candle]]
    # The candle of each interval that the live series goes on filling.
    forming: dict[str, Candle]
    # Unrounded mid at ``end_ms``: the live series' next tick moves from here.
    mid: float
    end_ms: int
    quote: dict[str, Any]
    session: SessionStats

    @property
    def last_close(self) -> float:
        return self.forming[FINEST].close if FINEST in self.forming else self.closed[FINEST][-1].close

    def count(self) -> int:
        return sum(len(c) for c in self.closed.values()) + len(self.forming)


@dataclass(frozen=True)
class _SamplingWindow:
    """When the path is sampled: ``[start, end)``, every ``coarse_step_ms`` before
    ``fine_from``, then every ``step_ms``."""

    start: int
    end: int
    fine_from: int
    step_ms: int
    coarse_step_ms: int

    def segments(self) -> tuple[tuple[int, int, int], ...]:
        """``(first, last, step)`` of the coarse part, then of the fine part."""
        return ((self.start, self.fine_from, self.coarse_step_ms), (self.fine_from, self.end, self.step_ms))


def generate_history(
    spec: SymbolSpec,
    *,
    end_ms: int,
    span_ms: int = DAY_MS,
    seed: int | str = 0,
    end_price: float | None = None,
    start_price: float | None = None,
    start_ms: int | None = None,
    keep_ms: Mapping[str, int] | None = None,
    step_ms: int = DEFAULT_STEP_MS,
    coarse_step_ms: int | None = None,
    fine_from_ms: int | None = None,
    time_scale: float = DEFAULT_TIME_SCALE,
) -> History:
    """Candles of ``spec`` over ``[start, end_ms)``.

    ``start`` is ``start_ms`` when given (a gap to fill), otherwise ``end_ms - span_ms``
    rounded down to a whole hour so every coarse candle is complete. ``keep_ms`` limits
    how far back an interval's candles are returned (e.g. ``{"5s": 3_600_000}``).
    Exactly one of ``end_price`` and ``start_price`` anchors the path; with neither the
    history ends at ``spec.initial_price``. The path is sampled every ``step_ms``, or every
    ``coarse_step_ms`` before ``fine_from_ms`` (where only coarser candles are kept, fewer
    samples look the same and cost less).

    Five phases: the sampling window, the path (log-price candles), its anchor, the
    candles of every interval, then what is kept and the live quote.
    """
    if end_price is not None and start_price is not None:
        raise ValueError("anchor the history at its start or at its end, not both")
    window = _sampling_window(end_ms, span_ms, start_ms, step_ms, coarse_step_ms, fine_from_ms)
    fine, x = _walk_path(spec, window, random.Random(f"{seed}:{spec.symbol}"), time_scale)
    shift = _anchor_shift(spec, x, end_price=end_price, start_price=start_price)
    by_interval = _price_candles(spec, fine, shift, end_ms)
    closed, forming = _split_closed(by_interval, end_ms, start_ms=start_ms, keep_ms=keep_ms)
    mid = math.exp(x + shift)
    session = _session(by_interval.get("1m", by_interval[FINEST]), end_ms)
    quote = _quote(spec, mid, session, end_ms - 1 - (end_ms - 1) % step_ms)
    return History(spec.symbol, closed, forming, mid, end_ms, quote, session)


def _sampling_window(
    end_ms: int,
    span_ms: int,
    start_ms: int | None,
    step_ms: int,
    coarse_step_ms: int | None,
    fine_from_ms: int | None,
) -> _SamplingWindow:
    """Phase 1: where the path starts, where fine sampling begins, and both steps (checked)."""
    finest_ms = INTERVALS_MS[FINEST]
    coarse_step_ms = coarse_step_ms or step_ms
    if finest_ms % step_ms or finest_ms % coarse_step_ms:
        raise ValueError(f"steps must divide the finest interval ({finest_ms} ms)")
    start = start_ms if start_ms is not None else end_ms - span_ms - (end_ms - span_ms) % HOUR_MS
    if start >= end_ms:
        raise ValueError("nothing to generate: start is not before end")
    start -= start % step_ms
    fine_from = start if fine_from_ms is None else min(max(fine_from_ms - fine_from_ms % finest_ms, start), end_ms)
    return _SamplingWindow(start, end_ms, fine_from, step_ms, coarse_step_ms)


def _walk_path(
    spec: SymbolSpec, window: _SamplingWindow, rng: random.Random, time_scale: float
) -> tuple[list[list[float]], float]:
    """Phase 2: the simulated path as finest candles in log-price space, and where it ends.

    Each candle is ``[start, open, high, low, close, volume]``, prices relative to the
    path's start (0.0). The simulator's model (``PriceProcess.log_return``) with its
    per-step constants hoisted out of the loop (tests/workers/test_backfill.py checks the
    volatility); the loop keeps everything in locals, as it runs 86,400 times a day.
    """
    finest_ms = INTERVALS_MS[FINEST]
    gauss, uniform, expo = rng.gauss, rng.random, rng.expovariate
    jumps = spec.jump_intensity > 0
    volume_rate = 1.0 / spec.base_volume
    activity_scale = ACTIVITY_PER_SIGMA / max(spec.volatility, MIN_VOLATILITY)
    max_extra = MAX_EXTRA_ACTIVITY  # a local: the loop below runs once a sample
    fine: list[list[float]] = []
    x = 0.0
    current: list[float] = []
    bucket_end = -1
    for first, last, step in window.segments():
        drift_step, vol_step, jump_p, ticks_per_step = _step_constants(spec, step, time_scale)
        for ts in range(first, last, step):
            r = drift_step + vol_step * gauss(0.0, 1.0)
            if jumps and uniform() < jump_p:
                r += gauss(0.0, JUMP_SIGMA)
            x += r
            activity = 1.0 + min(abs(r) * activity_scale, max_extra)
            volume = float(max(1, round(expo(volume_rate) * activity * ticks_per_step)))
            if ts >= bucket_end:
                bucket = ts - ts % finest_ms
                bucket_end = bucket + finest_ms
                current = [bucket, x, x, x, x, volume]
                fine.append(current)
            else:
                if x > current[2]:
                    current[2] = x
                elif x < current[3]:
                    current[3] = x
                current[4] = x
                current[5] += volume
    return fine, x


def _step_constants(spec: SymbolSpec, step_ms: int, time_scale: float) -> tuple[float, float, float, float]:
    """Per-step drift, volatility, jump probability, and live ticks one sample stands for."""
    sigma = spec.volatility
    dt_years = step_ms / 1000.0 * time_scale / SECONDS_PER_YEAR
    drift_step = (spec.drift - 0.5 * sigma * sigma) * dt_years
    vol_step = sigma * math.sqrt(dt_years)
    jump_p = 1.0 - math.exp(-spec.jump_intensity * step_ms / 1000.0 * time_scale / SECONDS_PER_DAY)
    ticks_per_step = max(step_ms / spec.tick_interval_ms, 1.0)
    return drift_step, vol_step, jump_p, ticks_per_step


def _anchor_shift(spec: SymbolSpec, x: float, *, end_price: float | None, start_price: float | None) -> float:
    """Phase 3: the log-price offset that puts the path's start (or end, at ``x``) on its anchor."""
    if start_price is not None:
        return math.log(start_price)
    return math.log(end_price if end_price is not None else spec.initial_price) - x


def _price_candles(spec: SymbolSpec, fine: list[list[float]], shift: float, end_ms: int) -> dict[str, list[Candle]]:
    """Phase 4: the finest candles in prices, and every coarser interval rolled up from them."""
    finest_ms = INTERVALS_MS[FINEST]
    precision = spec.precision
    tick = spec.tick_size

    def price(value: float) -> float:
        return max(round(math.exp(value + shift), precision), tick)

    finest = [
        Candle(
            FINEST,
            int(s),
            price(o),
            price(h),
            price(lo),
            price(c),
            v,
            # The candle holding ``end_ms`` still forms: the live series goes on filling it.
            closed=int(s) + finest_ms <= end_ms,
        )
        for s, o, h, lo, c, v in fine
    ]
    by_interval: dict[str, list[Candle]] = {FINEST: finest}
    # Each interval from the next finer one: the same path, whatever the interval.
    ordered = sorted(INTERVALS_MS, key=INTERVALS_MS.__getitem__)
    for finer, coarser in itertools.pairwise(ordered):
        by_interval[coarser] = roll_up(by_interval[finer], coarser)
    return by_interval


def _split_closed(
    by_interval: dict[str, list[Candle]],
    end_ms: int,
    *,
    start_ms: int | None,
    keep_ms: Mapping[str, int] | None,
) -> tuple[dict[str, list[Candle]], dict[str, Candle]]:
    """Phase 5: each interval's closed candles to store (within ``keep_ms``, after a gap's
    ``start_ms``) and the candle the live series goes on filling."""
    closed: dict[str, list[Candle]] = {}
    forming: dict[str, Candle] = {}
    for interval, candles in by_interval.items():
        if candles and not candles[-1].closed:
            forming[interval] = candles[-1]
            candles = candles[:-1]
        if start_ms is not None:
            # Filling a gap: the coarse candle that began before it is already stored.
            candles = [c for c in candles if c.start >= start_ms]
        if keep_ms and interval in keep_ms:
            oldest = end_ms - keep_ms[interval]
            candles = [c for c in candles if c.start >= oldest]
        closed[interval] = candles
    return closed, forming


def _quote(spec: SymbolSpec, mid: float, session: SessionStats, ts: int) -> dict[str, Any]:
    """The snapshot quote at ``ts`` (the last sample): prices from ``mid``, the session's change."""
    last_price, bid, ask = quote_prices(mid, spec.spread_bps, spec.precision)
    change, change_pct = session.change(last_price, spec.precision)
    return {
        "price": last_price,
        "bid": bid,
        "ask": ask,
        "volume": session.volume,
        "ts": ts,
        "open": session.open,
        "high": session.high,
        "low": session.low,
        "change": change,
        "change_pct": change_pct,
    }


def _session(candles: list[Candle], end_ms: int) -> SessionStats:
    """The last 24 hours as the live session: the grid's change is a 24 h change from the start."""
    day = [c for c in candles if c.start >= end_ms - DAY_MS] or candles[-1:]
    session = SessionStats.opening_at(day[0].open)
    for candle in day:
        session.update(candle.high, 0.0)
        session.update(candle.low, candle.volume)
    return session
