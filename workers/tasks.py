"""Thin Celery tasks run by beat: housekeeping around the producer."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from dashboard import alert_services
from dashboard.market import store
from dashboard.market.client import sync_redis
from dashboard.selectors import enabled_symbol_codes
from dashboard.services import flush_pending_candles
from dashboard.services import prune_candles as prune_stored_candles

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def flush_candles() -> int:
    """Persist closed candles to the database in batches."""
    # The process-wide client: a task every 2 s need not open a connection each time.
    written = flush_pending_candles(sync_redis())
    if written:
        logger.debug("flushed %d candles", written)
    return written


@shared_task(ignore_result=True)
def producer_watchdog() -> dict[str, list[str]]:
    """Log every enabled symbol that no producer holds a lease for.

    Producers take over orphaned symbols on their own; this makes a market with
    no live producer (no worker running) visible in the logs.
    """
    symbols = enabled_symbol_codes()
    client = sync_redis()
    with client.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            pipe.exists(store.lease_key(symbol))
        orphaned = [s for s, held in zip(symbols, pipe.execute(), strict=True) if not held]
    # Operators see when housekeeping last ran.
    client.set(store.WATCHDOG_KEY, time.time_ns() // 1_000_000)
    if orphaned:
        logger.warning("no producer holds %d symbols: %s", len(orphaned), ", ".join(orphaned))
    return {"orphaned": orphaned}


@shared_task(ignore_result=True)
def prune_candles() -> dict[str, int]:
    """Delete stored candles past their interval's retention (``TICKER["CANDLE_RETENTION_MS"]``).

    Bounded per run (``prune_candles`` deletes a limited number of batches), so a beat that
    was stopped for a week catches up over several runs instead of one long transaction.
    """
    return prune_stored_candles(time.time_ns() // 1_000_000, settings.TICKER["CANDLE_RETENTION_MS"])


@shared_task(ignore_result=True)
def prune_alerts() -> int:
    """Delete fired alerts older than ``TICKER["ALERT_RETENTION_DAYS"]``, seen or not.

    Bounded per run like the candle prune; waiting alerts are never touched.
    """
    retention = timedelta(days=settings.TICKER["ALERT_RETENTION_DAYS"])
    return alert_services.prune_fired(timezone.now() - retention)
