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
    """
    if end_price is not None and start_price is not None:
        raise ValueError("anchor the history at its start or at its end, not both")
    finest_ms = INTERVALS_MS[FINEST]
    coarse_step_ms = coarse_step_ms or step_ms
    if finest_ms % step_ms or finest_ms % coarse_step_ms:
        raise ValueError(f"steps must divide the finest interval ({finest_ms} ms)")
    start = start_ms if start_ms is not None else end_ms - span_ms - (end_ms - span_ms) % HOUR_MS
    if start >= end_ms:
        raise ValueError("nothing to generate: start is not before end")
    start -= start % step_ms
    rng = random.Random(f"{seed}:{spec.symbol}")
    gauss, uniform, expo = rng.gauss, rng.random, rng.expovariate
    sigma = spec.volatility
    jumps = spec.jump_intensity > 0
    volume_rate = 1.0 / spec.base_volume
    activity_scale = 50.0 / max(sigma, 1e-9)
    fine_from = start if fine_from_ms is None else min(max(fine_from_ms - fine_from_ms % finest_ms, start), end_ms)

    # Finest candles in log-price space: [start, open, high, low, close, volume].
    fine: list[list[float]] = []
    x = 0.0
    current: list[float] = []
    bucket_end = -1
    for first, last, step in ((start, fine_from, coarse_step_ms), (fine_from, end_ms, step_ms)):
        # The simulator's model (``PriceProcess.log_return``) with its per-step constants
        # hoisted out of the loop (tests/workers/test_backfill.py checks the volatility).
        dt_years = step / 1000.0 * time_scale / SECONDS_PER_YEAR
        drift_step = (spec.drift - 0.5 * sigma * sigma) * dt_years
        vol_step = sigma * math.sqrt(dt_years)
        jump_p = 1.0 - math.exp(-spec.jump_intensity * step / 1000.0 * time_scale / SECONDS_PER_DAY)
        ticks_per_step = max(step / spec.tick_interval_ms, 1.0)
        for ts in range(first, last, step):
            r = drift_step + vol_step * gauss(0.0, 1.0)
            if jumps and uniform() < jump_p:
                r += gauss(0.0, JUMP_SIGMA)
            x += r
            # Busier prints on bigger moves, as the live simulator does.
            activity = 1.0 + min(abs(r) * activity_scale, 20.0)
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

    if start_price is not None:
        shift = math.log(start_price)
    else:
        shift = math.log(end_price if end_price is not None else spec.initial_price) - x
    precision = spec.precision
    tick = spec.tick_size

    def price(value: float) -> float:
        return max(round(math.exp(value + shift), precision), tick)

    last_ts = end_ms - 1
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

    mid = math.exp(x + shift)
    session = _session(by_interval.get("1m", finest), end_ms)
    last_price, bid, ask = quote_prices(mid, spec.spread_bps, precision)
    change, change_pct = session.change(last_price, precision)
    quote = {
        "price": last_price,
        "bid": bid,
        "ask": ask,
        "volume": session.volume,
        "ts": last_ts - last_ts % step_ms,
        "open": session.open,
        "high": session.high,
        "low": session.low,
        "change": change,
        "change_pct": change_pct,
    }
    return History(spec.symbol, closed, forming, mid, end_ms, quote, session)


def _session(candles: list[Candle], end_ms: int) -> SessionStats:
    """The last 24 hours as the live session: the grid's change is a 24 h change from the start."""
    day = [c for c in candles if c.start >= end_ms - DAY_MS] or candles[-1:]
    session = SessionStats.opening_at(day[0].open)
    for candle in day:
        session.update(candle.high, 0.0)
        session.update(candle.low, candle.volume)
    return session
