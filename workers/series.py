"""One series a producer holds the lease for: its price process, candles, order book and trades.

``open_series`` continues a series from what Redis holds (or starts a new epoch), the
order book included: the same epoch keeps its book, its update ids and its trade ids, so
a takeover by another worker is seamless for a client's book and tape too.
``step`` prints one tick through the book (the book decides where the tick's trades fill,
and a large one moves the price); ``book_window`` is what a window publishes and stores of
the book: its changes (or, once a second, all of it as a keyframe) and its trades.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

from dashboard.market import store as market_store
from dashboard.market.book_store import aread_book, commit_call
from dashboard.market.candles import Candle, CandleBook
from dashboard.market.depth import book_entry, trades_piece
from workers.order_book import BookDiff, OrderBook, Trade
from workers.simulator import PriceProcess, SessionStats, SymbolSpec, Tick, on_the_clock

logger = logging.getLogger(__name__)

# A keyframe (the whole book) this often per symbol: a web process that joins, or missed a
# window, has every book again within this long.
KEYFRAME_EVERY_MS = 1000


@dataclass
class OwnedSeries:
    """A symbol this producer holds the lease for."""

    epoch: str
    process: PriceProcess
    next_tick_ms: int
    candles: CandleBook
    book: OrderBook
    # The stored quote: kept across takeovers so a window without ticks never blanks it.
    quote: dict[str, Any] | None = None
    trades: list[Trade] = field(default_factory=list)
    keyframe_due_ms: int = 0


@dataclass(frozen=True)
class BookWindow:
    """What one window publishes and stores of a series' book."""

    entry: list[Any] | None
    trades: list[Any] | None
    commit: tuple[list[str], list[Any]] | None


async def open_series(
    redis: Any,
    spec: SymbolSpec,
    state: market_store.SeriesState | None,
    forming: dict[str, Candle],
    now: int,
    rng: random.Random,
    time_scale: float,
) -> OwnedSeries:
    """The series of ``spec`` continued from ``state`` (None: a new epoch)."""
    if state is None:
        # State lost (or first start): a new epoch tells clients to take a snapshot.
        epoch = market_store.new_epoch()
        await redis.delete(market_store.ticks_key(spec.symbol))
        process = PriceProcess(spec=spec, rng=rng, mid=spec.initial_price, time_scale=time_scale)
        logger.info("%s: new epoch %s at %s", spec.symbol, epoch, spec.initial_price)
    else:
        epoch = state.epoch
        session = SessionStats(*state.session) if state.session else None
        process = PriceProcess(spec=spec, rng=rng, mid=state.mid, seq=state.seq, session=session, time_scale=time_scale)
        logger.info("%s: continuing epoch %s from seq %d", spec.symbol, epoch, state.seq)
    stored = await aread_book(redis, spec.symbol)
    book_rng = random.Random(rng.getrandbits(64))
    if stored is not None and stored.get("epoch") == epoch:
        book = OrderBook.from_state(spec, book_rng, stored["state"])
    else:
        book = OrderBook(spec, book_rng)
    return OwnedSeries(
        epoch=epoch,
        process=process,
        next_tick_ms=on_the_clock(now, spec.tick_interval_ms),
        candles=CandleBook(forming=forming),
        book=book,
        quote=state.quote if state else None,
    )


def step(series: OwnedSeries, tick: Tick) -> Tick:
    """``tick`` printed through the book: its trades kept for the window, the tick as printed."""
    process = series.process
    printed = series.book.on_tick(tick, process.mid)
    process.mid = printed.mid
    if printed.tick.price != tick.price:
        # The last trade's price is the tick's: the session's range includes it.
        process.session.update(printed.tick.price, 0.0)
    series.trades.extend(printed.trades)
    return printed.tick


def book_window(series: OwnedSeries, symbol: str, owner: str, now: int) -> BookWindow:
    """Take the window's book changes and trades (a keyframe when one is due)."""
    book, epoch = series.book, series.epoch
    diff: BookDiff | None = book.take_diff()
    if now >= series.keyframe_due_ms:
        series.keyframe_due_ms = now + KEYFRAME_EVERY_MS
        full = book.keyframe()
        first_u = diff.first_u if diff is not None else book.u + 1
        diff = BookDiff(first_u=first_u, last_u=book.u, bids=full.bids, asks=full.asks, full=True)
    trades, series.trades = series.trades, []
    if diff is None and not trades:
        return BookWindow(None, None, None)
    entry = None if diff is None else book_entry(epoch, diff.first_u, diff.last_u, now, diff.bids, diff.asks, diff.full)
    wire = [t.to_wire(symbol, epoch) for t in trades]
    traded = [epoch, trades[0].id, trades[-1].id, trades_piece(wire)] if trades else None
    stored = {"epoch": epoch, "ts": now, "state": book.to_state()}
    commit = commit_call(symbol, owner, stored, [trades_piece([t]) for t in wire])
    return BookWindow(entry, traded, commit)
