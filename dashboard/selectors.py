"""Selectors (reads): the symbol catalog as streams list it, and candle history.

History merges the database (old candles), Redis (recent closed candles not yet
flushed) and the forming candle, so it is complete up to the current tick.
"""

from __future__ import annotations

from typing import Any

import orjson

from dashboard.market import store
from dashboard.market.candles import Candle as LiveCandle
from dashboard.market.candles import merge_history
from dashboard.models import Candle, Clock, Palette, Preference, Symbol

# A chart asks for DEFAULT_HISTORY candles (a day of 1-minute candles fills it); no
# request gets more than MAX_HISTORY.
DEFAULT_HISTORY = 1000
MAX_HISTORY = 2000


def catalog_entries() -> list[dict[str, Any]]:
    """Enabled symbols in the shape of the protocol's ``symbols`` list."""
    return [s.to_catalog_entry() for s in Symbol.objects.filter(enabled=True)]


def enabled_symbol_codes() -> list[str]:
    return list(Symbol.objects.filter(enabled=True).values_list("symbol", flat=True))


def candle_history(redis: Any, symbol: Symbol, interval: str, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` candles of ``symbol``, oldest first, the forming one last."""
    limit = max(1, min(limit, MAX_HISTORY))
    # Tuples, not model instances: a thousand rows per chart load.
    rows = (
        Candle.objects.filter(symbol=symbol, interval=interval)
        .order_by("-start_ms")
        .values_list("start_ms", "open", "high", "low", "close", "volume")[:limit]
    )
    stored = (LiveCandle(interval, *row, closed=True) for row in reversed(rows))
    with redis.pipeline(transaction=False) as pipe:
        pipe.lrange(store.recent_candles_key(symbol.symbol, interval), 0, limit - 1)
        pipe.hget(store.forming_key(symbol.symbol), interval)
        recent, forming = pipe.execute()
    cached = (LiveCandle.from_wire(interval, orjson.loads(raw)) for raw in recent)
    live = [LiveCandle.from_wire(interval, orjson.loads(forming))] if forming else []
    return [c.to_wire() for c in merge_history(stored, cached, live, limit=limit)]


def latest_candle(symbol: str, interval: str) -> LiveCandle | None:
    """The newest stored candle of ``symbol`` in ``interval`` (where generated history resumes)."""
    row = Candle.objects.filter(symbol__symbol=symbol, interval=interval).order_by("-start_ms").first()
    if row is None:
        return None
    return LiveCandle(interval, row.start_ms, row.open, row.high, row.low, row.close, row.volume, closed=True)


DEFAULT_PREFERENCES = {"clock": Clock.LOCAL.value, "palette": Palette.STANDARD.value}


def preferences_for(user: Any) -> dict[str, str]:
    """A trader's display preferences (the defaults until they choose)."""
    if not getattr(user, "is_authenticated", False):
        return dict(DEFAULT_PREFERENCES)
    found = Preference.objects.filter(user=user).first()
    return found.to_wire() if found else dict(DEFAULT_PREFERENCES)
