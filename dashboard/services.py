"""Admin write operations on symbols: halt, resume, shock, reset.

Each reaches the running producers and every open stream without a restart: database
changes are announced after commit (a ``symbols`` frame to streams, a catalog version
bump to producers); price commands are queued in Redis for the owning producer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction

from dashboard import streaming
from dashboard.catalog import catalog_entries
from dashboard.models import Symbol
from workers import market_store
from workers.broadcast import publish_catalog

logger = logging.getLogger(__name__)

MIN_SHOCK_PERCENT = -90.0
MAX_SHOCK_PERCENT = 900.0


def announce_catalog_change() -> None:
    """After commit: producers reload within a window, streams get a ``symbols`` frame."""

    def announce() -> None:
        try:
            market_store.bump_catalog_version(streaming.sync_redis())
        except Exception:
            logger.warning("catalog version not bumped: Redis unavailable (producers reload within 1 s)")
        publish_catalog(catalog_entries())

    transaction.on_commit(announce)


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
    redis = streaming.sync_redis()
    codes = []
    for symbol in symbols:
        market_store.push_control(redis, symbol.symbol, command)
        codes.append(symbol.symbol)
    logger.info("%s queued for %s", command["op"], ", ".join(codes))
    return codes
