"""Candle (OHLCV) aggregation from ticks, in several intervals, with exchange-kline semantics.

Pure Python. A candle covers ``[start, start + interval)``; it is *forming* while ticks
can still land in it and *closed* once a tick (or the clock) passes its end. Closed
candles never change again, so they can be persisted and cached freely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The one definition of candle intervals: the protocol, the store, the database's
# choices and the browser (through ``hello``) all take theirs from here.
INTERVALS_MS: dict[str, int] = {"5s": 5_000, "1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}


def interval_label(interval: str) -> str:
    """``"5s"`` -> ``"5 seconds"``, ``"1m"`` -> ``"1 minute"``: for forms and the admin."""
    count, unit = int(interval[:-1]), {"s": "second", "m": "minute", "h": "hour"}[interval[-1]]
    return f"{count} {unit}{'' if count == 1 else 's'}"


@dataclass
class Candle:
    """One interval's open, high, low, close and traded volume."""

    interval: str
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool = False

    @property
    def end(self) -> int:
        return self.start + INTERVALS_MS[self.interval]

    @classmethod
    def opening(cls, interval: str, ts: int, price: float, volume: float) -> Candle:
        start = ts - ts % INTERVALS_MS[interval]
        return cls(interval, start, price, price, price, price, volume)

    def add(self, price: float, volume: float) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += volume

    def to_wire(self) -> dict[str, Any]:
        return {
            "ts": self.start,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "closed": self.closed,
        }

    @classmethod
    def from_wire(cls, interval: str, raw: Mapping[str, Any]) -> Candle:
        return cls(
            interval=interval,
            start=int(raw["ts"]),
            open=float(raw["open"]),
            high=float(raw["high"]),
            low=float(raw["low"]),
            close=float(raw["close"]),
            volume=float(raw["volume"]),
            closed=bool(raw.get("closed", False)),
        )


class CandleBook:
    """The forming candle of one symbol in every interval."""

    def __init__(self, intervals: Iterable[str] = INTERVALS_MS, forming: Mapping[str, Candle] | None = None) -> None:
        self.intervals = tuple(intervals)
        self.forming: dict[str, Candle] = dict(forming or {})

    def add(self, ts: int, price: float, volume: float) -> list[Candle]:
        """Account one tick; returns the candles it closed."""
        closed: list[Candle] = []
        for interval in self.intervals:
            current = self.forming.get(interval)
            if current is not None and ts >= current.end:
                current.closed = True
                closed.append(current)
                current = None
            if current is None:
                self.forming[interval] = Candle.opening(interval, ts, price, volume)
            else:
                current.add(price, volume)
        return closed

    def close_due(self, now: int) -> list[Candle]:
        """Close candles whose interval has ended even though no tick came (a halted symbol)."""
        closed = [c for c in self.forming.values() if now >= c.end]
        for candle in closed:
            candle.closed = True
            del self.forming[candle.interval]
        return closed


def roll_up(candles: Iterable[Candle], interval: str) -> list[Candle]:
    """Finer candles (oldest first, contiguous) combined into ``interval`` candles.

    A coarser candle is closed only if the last finer candle in it is closed and ends
    where it ends; otherwise it is still forming.
    """
    size = INTERVALS_MS[interval]
    out: list[Candle] = []
    current: Candle | None = None
    last_end = 0
    last_closed = False
    for fine in candles:
        start = fine.start - fine.start % size
        if current is None or start != current.start:
            if current is not None:
                current.closed = last_closed and last_end == current.end
                out.append(current)
            current = Candle(interval, start, fine.open, fine.high, fine.low, fine.close, fine.volume)
        else:
            current.high = max(current.high, fine.high)
            current.low = min(current.low, fine.low)
            current.close = fine.close
            current.volume += fine.volume
        last_end, last_closed = fine.end, fine.closed
    if current is not None:
        current.closed = last_closed and last_end == current.end
        out.append(current)
    return out


def merge_history(*sources: Iterable[Candle], limit: int) -> list[Candle]:
    """Candles from several sources (database, cache, forming) by start, newest wins, oldest first."""
    by_start: dict[int, Candle] = {}
    for source in sources:
        for candle in source:
            by_start[candle.start] = candle
    ordered = [by_start[k] for k in sorted(by_start)]
    return ordered[-limit:] if limit > 0 else []
