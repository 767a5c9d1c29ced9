"""The market over HTTP: the catalog with latest quotes, and a symbol's candle history.

* ``GET /api/symbols/``: enabled symbols with their latest quote, epoch and seq.
* ``GET /api/symbols/<symbol>/candles/?interval=1m&limit=100``: closed candles, then the forming one.
* ``GET /api/symbols/<symbol>/depth/?levels=20``: the order book, with the ``u`` a stream's
  ``depth`` frames continue (``U == u + 1``).
* ``GET /api/symbols/<symbol>/trades/?limit=100``: the latest trades, newest first.

The live market streams over WebSocket (docs/protocol.md); these answer one-off reads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from dashboard.api.errors import get_or_404, responses
from dashboard.market.book_store import KEEP_TRADES, read_book, read_trades
from dashboard.market.client import sync_redis
from dashboard.market.protocol import DEFAULT_DEPTH_LEVELS, DEFAULT_INTERVAL, INTERVALS, MAX_DEPTH_LEVELS
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


# [price, size]; a list of two, not a tuple, for ninja's OpenAPI 3.1 schema.
Level = Annotated[list[float], Field(min_length=2, max_length=2)]


class DepthOut(Schema):
    """The order book, best first; ``u``: its last update (``null`` epoch until the symbol ticks)."""

    symbol: str
    epoch: str | None
    u: int
    bids: list[Level] = Field(description="[price, size], best (highest) first")
    asks: list[Level] = Field(description="[price, size], best (lowest) first")


class TradeOut(Schema):
    symbol: str
    epoch: str
    id: int = Field(description="rises by 1 per trade of the symbol within an epoch")
    ts: int = Field(description="ms since the Unix epoch, UTC")
    price: float
    size: float
    side: Literal["buy", "sell"] = Field(description="the aggressor's side")


class TradesOut(Schema):
    symbol: str
    trades: list[TradeOut]


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


@router.get(
    "/symbols/{symbol}/depth/",
    response=responses({200: DepthOut}, 400, 404),
    summary="Order book of a symbol",
)
def depth(
    request: HttpRequest,
    symbol: str,
    levels: int = Query(DEFAULT_DEPTH_LEVELS, ge=1, le=MAX_DEPTH_LEVELS),  # type: ignore[type-arg]
) -> dict[str, Any]:
    """The best ``levels`` of each side, as of the end of the producer's last window."""
    instrument = get_or_404(Symbol, symbol=symbol, enabled=True)
    book = read_book(sync_redis(), instrument.symbol)
    if book is None:
        return {"symbol": instrument.symbol, "epoch": None, "u": 0, "bids": [], "asks": []}
    state = book["state"]
    return {
        "symbol": instrument.symbol,
        "epoch": book["epoch"],
        "u": state["u"],
        "bids": state["bids"][:levels],
        "asks": state["asks"][:levels],
    }


@router.get(
    "/symbols/{symbol}/trades/",
    response=responses({200: TradesOut}, 400, 404),
    summary="Latest trades of a symbol",
)
def trades(
    request: HttpRequest,
    symbol: str,
    limit: int = Query(100, ge=1, le=KEEP_TRADES),  # type: ignore[type-arg]
) -> dict[str, Any]:
    """Newest first, up to ``limit``."""
    instrument = get_or_404(Symbol, symbol=symbol, enabled=True)
    return {"symbol": instrument.symbol, "trades": read_trades(sync_redis(), instrument.symbol, limit)}
