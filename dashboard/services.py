"""Services (writes): admin operations on symbols (halt, resume, shock, reset, what a
deletion leaves in Redis) and the candle flush from Redis to the database.

Each admin operation reaches the running producers and every open stream without a restart: database
changes are announced after commit (a ``symbols`` frame to streams, a catalog version
bump to producers); price commands are queued in Redis for the owning producer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from django.db import transaction

from dashboard.market import store
from dashboard.market.broadcast import publish_catalog
from dashboard.market.candles import Candle as LiveCandle
from dashboard.market.client import sync_redis
from dashboard.models import Candle, Clock, Palette, Preference, Symbol
from dashboard.selectors import catalog_entries

logger = logging.getLogger(__name__)

MIN_SHOCK_PERCENT = -90.0
MAX_SHOCK_PERCENT = 900.0
# Rows per database write of the flush, the history backfill and the prune: large enough
# to amortise a round trip, small enough that other writers get the database in between.
FLUSH_BATCH = 1000
HISTORY_BATCH = 1000
PRUNE_BATCH = 5000
# Batches per flush call: a beat run stays short however far behind it is.
FLUSH_MAX_BATCHES = 20


def announce_catalog_change() -> None:
    """After commit: producers reload within a window, streams get a ``symbols`` frame."""

    def announce() -> None:
        try:
            store.bump_catalog_version(sync_redis())
        except Exception:
            logger.warning("catalog version not bumped: Redis unavailable (producers reload within 1 s)")
        publish_catalog(catalog_entries())

    transaction.on_commit(announce)


def forget_symbol_state(code: str) -> None:
    """After commit: a deleted symbol's market state leaves Redis (``store.purge_symbol``), so
    the code, if an admin creates it again, starts a new epoch with its own history instead
    of resuming the old series and its queued shocks."""

    def forget() -> None:
        try:
            store.purge_symbol(sync_redis(), code)
        except Exception:
            logger.warning("%s deleted but its Redis state kept: Redis unavailable", code)
        else:
            logger.info("%s deleted: its Redis state removed", code)

    transaction.on_commit(forget)


@transaction.atomic
def set_halted(symbols: Iterable[Symbol], halted: bool) -> int:
    codes = [s.symbol for s in symbols]
    changed = Symbol.objects.filter(symbol__in=codes).exclude(halted=halted).update(halted=halted)
    if changed:
        logger.info("%s %s", "halted" if halted else "resumed", ", ".join(codes))
        announce_catalog_change()
    return changed


def shock(symbols: Iterable[Symbol], percent: float) -> list[str]:
    """Move each symbol's price by ``percent`` (e.g. -5 for -5 %) at its next tick."""
    if not MIN_SHOCK_PERCENT <= percent <= MAX_SHOCK_PERCENT or percent == 0:
        raise ValueError(f"shock must be non-zero, between {MIN_SHOCK_PERCENT} % and {MAX_SHOCK_PERCENT} %")
    return _control(symbols, {"op": "shock", "fraction": percent / 100.0})


def reset_to_initial_price(symbols: Iterable[Symbol]) -> list[str]:
    return _control(symbols, {"op": "reset"})


def _control(symbols: Iterable[Symbol], command: dict[str, object]) -> list[str]:
    redis = sync_redis()
    codes = []
    for symbol in symbols:
        store.push_control(redis, symbol.symbol, command)
        codes.append(symbol.symbol)
    logger.info("%s queued for %s", command["op"], ", ".join(codes))
    return codes


def flush_pending_candles(redis: Any, *, batch: int = FLUSH_BATCH, max_batches: int = FLUSH_MAX_BATCHES) -> int:
    """Move pending closed candles into the database; returns how many were written.

    Each batch is read, inserted (duplicates ignored), then trimmed from the queue, so a
    crash between insert and trim re-inserts the batch harmlessly instead of losing it.
    """
    written = 0
    symbol_ids = dict(Symbol.objects.values_list("symbol", "id"))
    for _ in range(max_batches):
        with store.pending_candles(redis, batch) as raw:
            rows = _candle_rows(raw, symbol_ids)
            Candle.objects.bulk_create(rows, ignore_conflicts=True)
        written += len(rows)
        if len(raw) < batch:
            break
    return written


def _candle_rows(raw: Iterable[bytes], symbol_ids: Mapping[str, int]) -> list[Candle]:
    """Database rows of encoded pending candles; those of a symbol deleted meanwhile are dropped."""
    rows = []
    for encoded in raw:
        data = orjson.loads(encoded)
        symbol_id = symbol_ids.get(data["symbol"])
        if symbol_id is not None:
            rows.append(_row(symbol_id, LiveCandle.from_wire(data["interval"], data)))
    return rows


def _row(symbol_id: int, candle: LiveCandle) -> Candle:
    return Candle(
        symbol_id=symbol_id,
        interval=candle.interval,
        start_ms=candle.start,
        open=candle.open,
        high=candle.high,
        low=candle.low,
        close=candle.close,
        volume=candle.volume,
    )


def store_history(symbol: str, candles: Iterable[LiveCandle], *, batch: int = HISTORY_BATCH) -> int:
    """Insert generated candles of ``symbol`` in batches; candles already stored are kept.

    Returns how many rows were offered (0 when the symbol no longer exists).
    """
    symbol_id = Symbol.objects.filter(symbol=symbol).values_list("id", flat=True).first()
    if symbol_id is None:
        return 0
    rows = [_row(symbol_id, c) for c in candles]
    for i in range(0, len(rows), batch):
        # One transaction per batch: other writers (web sessions, the flush) get the
        # database between batches instead of waiting for a whole day of candles.
        Candle.objects.bulk_create(rows[i : i + batch], ignore_conflicts=True)
    return len(rows)


def prune_candles(
    now_ms: int, retention_ms: Mapping[str, int | None], *, batch: int = PRUNE_BATCH, max_batches: int = 20
) -> dict[str, int]:
    """Delete candles older than their interval's retention (``None``: kept for good).

    At most ``max_batches`` deletes of ``batch`` rows per call, so a beat run stays short
    however far behind it is; the next run goes on where this one stopped. Returns the
    rows deleted per interval.
    """
    deleted: dict[str, int] = {}
    budget = max_batches
    symbol_ids = list(Symbol.objects.values_list("id", flat=True))
    for interval, keep in retention_ms.items():
        if keep is None:
            continue
        cutoff = now_ms - keep
        for symbol_id in symbol_ids:
            while budget > 0:
                # Per symbol, so the (symbol, interval, -start_ms) index finds the oldest rows.
                ids = list(
                    Candle.objects.filter(symbol_id=symbol_id, interval=interval, start_ms__lt=cutoff)
                    .order_by("start_ms")
                    .values_list("id", flat=True)[:batch]
                )
                if not ids:
                    break
                budget -= 1
                count, _ = Candle.objects.filter(id__in=ids).delete()
                deleted[interval] = deleted.get(interval, 0) + count
                if len(ids) < batch:
                    break
    if deleted:
        logger.info("pruned candles: %s", ", ".join(f"{n} of {i}" for i, n in deleted.items()))
    return deleted


def set_preferences(user: Any, changes: Mapping[str, object]) -> dict[str, str]:
    """Store the given display preferences of ``user``; unknown names or values are refused."""
    allowed = {"clock": set(Clock.values), "palette": set(Palette.values)}
    unknown = set(changes) - set(allowed)
    if unknown:
        raise ValueError(f"unknown preferences: {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        if value not in allowed[name]:
            raise ValueError(f"{name} must be one of {', '.join(sorted(allowed[name]))}")
    preference, _ = Preference.objects.update_or_create(user=user, defaults=dict(changes))
    return preference.to_wire()
