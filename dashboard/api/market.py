"""The market over HTTP: the catalog with latest quotes, and a symbol's candle history.

* ``GET /api/symbols/``: enabled symbols with their latest quote, epoch and seq.
* ``GET /api/symbols/<symbol>/candles/?interval=1m&limit=100``: closed candles, then the forming one.

The live market streams over WebSocket (docs/protocol.md); these answer one-off reads.
"""

from __future__ import annotations

from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from dashboard.api.errors import get_or_404, responses
from dashboard.market.client import sync_redis
from dashboard.market.protocol import DEFAULT_INTERVAL, INTERVALS
from dashboard.market.store import read_quotes
from dashboard.models import Symbol
from dashboard.selectors import DEFAULT_HISTORY, MAX_HISTORY, candle_history, catalog_entries

IntervalName = Literal[INTERVALS]  # type: ignore[valid-type]


class QuoteOut(Schema):
    """Last trade, bid/ask and session statistics (as in the stream's ``snapshot``)."""

    price: float
    bid: float
    ask: float
    volume: float
    ts: int = Field(description="ms since the Unix epoch, UTC")
    open: float
    high: float
    low: float
    change: float
    change_pct: float


class SymbolOut(Schema):
    """A catalog entry with its latest quote (``null`` until the symbol first ticks)."""

    symbol: str
    name: str
    asset_class: str
    precision: int
    status: Literal["trading", "halted"]
    quote: QuoteOut | None
    epoch: str | None
    seq: int


class SymbolsOut(Schema):
    symbols: list[SymbolOut]


class CandleOut(Schema):
    ts: int = Field(description="start of the interval, ms since the Unix epoch, UTC")
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool = Field(description="false for the forming (last) candle")


class CandlesOut(Schema):
    symbol: str
    interval: IntervalName
    candles: list[CandleOut]


router = Router(tags=["market"])


@router.get("/symbols/", response=responses({200: SymbolsOut}), summary="The catalog with latest quotes")
def symbols(request: HttpRequest) -> dict[str, Any]:
    """Enabled symbols with their latest quote, epoch and seq."""
    catalog = catalog_entries()
    snapshots = read_quotes(sync_redis(), [e["symbol"] for e in catalog])
    for entry in catalog:
        snap = snapshots[entry["symbol"]]
        entry.update({"quote": snap.quote, "epoch": snap.epoch, "seq": snap.seq})
    return {"symbols": catalog}


@router.get(
    "/symbols/{symbol}/candles/",
    response=responses({200: CandlesOut}, 400, 404),
    summary="Candle history of a symbol",
)
def candles(
    request: HttpRequest,
    symbol: str,
    interval: IntervalName = DEFAULT_INTERVAL,
    limit: int = Query(DEFAULT_HISTORY, ge=1, le=MAX_HISTORY),  # type: ignore[type-arg]
) -> dict[str, Any]:
    """Closed candles, oldest first, then the forming one (``closed: false``)."""
    instrument = get_or_404(Symbol, symbol=symbol, enabled=True)
    data = candle_history(sync_redis(), instrument, interval, limit)
    return {"symbol": instrument.symbol, "interval": interval, "candles": data}
