"""Candle history: flushing closed candles from Redis to the database, and reading them back.

Writes are batched: beat's ``flush_candles`` moves up to a batch of pending candles
per query. Reads merge the database (old history), Redis (recent closed candles not
yet flushed) and the forming candle, so history is complete up to the current tick.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from dashboard.models import Candle, Symbol
from workers import market_store
from workers.candles import Candle as LiveCandle
from workers.candles import merge_history

logger = logging.getLogger(__name__)

FLUSH_BATCH = 1000
MAX_HISTORY = 1000


def flush_pending_candles(redis: Any, *, batch: int = FLUSH_BATCH, max_batches: int = 20) -> int:
    """Move pending closed candles into the database; returns how many were written.

    Each batch is read, inserted (duplicates ignored), then trimmed from the queue, so a
    crash between insert and trim re-inserts the batch harmlessly instead of losing it.
    """
    written = 0
    symbol_ids = dict(Symbol.objects.values_list("symbol", "id"))
    for _ in range(max_batches):
        raw = redis.lrange(market_store.PENDING_CANDLES_KEY, 0, batch - 1)
        if not raw:
            break
        rows = []
        for encoded in raw:
            data = orjson.loads(encoded)
            symbol_id = symbol_ids.get(data["symbol"])
            if symbol_id is None:
                continue  # the symbol was deleted meanwhile
            rows.append(
                Candle(
                    symbol_id=symbol_id,
                    interval=data["interval"],
                    start_ms=data["ts"],
                    open=data["open"],
                    high=data["high"],
                    low=data["low"],
                    close=data["close"],
                    volume=data["volume"],
                )
            )
        Candle.objects.bulk_create(rows, ignore_conflicts=True)
        redis.ltrim(market_store.PENDING_CANDLES_KEY, len(raw), -1)
        written += len(rows)
        if len(raw) < batch:
            break
    return written


def candle_history(redis: Any, symbol: Symbol, interval: str, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` candles of ``symbol``, oldest first, the forming one last."""
    limit = max(1, min(limit, MAX_HISTORY))
    stored = (
        LiveCandle(interval, c.start_ms, c.open, c.high, c.low, c.close, c.volume, closed=True)
        for c in Candle.objects.filter(symbol=symbol, interval=interval).order_by("-start_ms")[:limit]
    )
    with redis.pipeline(transaction=False) as pipe:
        pipe.lrange(market_store.recent_candles_key(symbol.symbol, interval), 0, limit - 1)
        pipe.hget(market_store.forming_key(symbol.symbol), interval)
        recent, forming = pipe.execute()
    cached = (LiveCandle.from_wire(interval, orjson.loads(raw)) for raw in recent)
    live = [LiveCandle.from_wire(interval, orjson.loads(forming))] if forming else []
    return [c.to_wire() for c in merge_history(stored, cached, live, limit=limit)]
