"""Thin Celery tasks run by beat: housekeeping around the producer."""

from __future__ import annotations

import logging
import time

import redis
from celery import shared_task
from django.conf import settings

from dashboard.catalog import enabled_symbol_codes
from dashboard.history import flush_pending_candles
from workers import market_store

logger = logging.getLogger(__name__)


def _market_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.MARKET_REDIS_URL, **settings.REDIS_CONNECTION_OPTIONS)


@shared_task(ignore_result=True)
def flush_candles() -> int:
    """Persist closed candles to the database in batches."""
    client = _market_redis()
    try:
        written = flush_pending_candles(client)
    finally:
        client.close()
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
    client = _market_redis()
    try:
        with client.pipeline(transaction=False) as pipe:
            for symbol in symbols:
                pipe.exists(market_store.lease_key(symbol))
            orphaned = [s for s, held in zip(symbols, pipe.execute(), strict=True) if not held]
        # Operators (and the readiness probe) see when housekeeping last ran.
        client.set(market_store.WATCHDOG_KEY, time.time_ns() // 1_000_000)
    finally:
        client.close()
    if orphaned:
        logger.warning("no producer holds %d symbols: %s", len(orphaned), ", ".join(orphaned))
    return {"orphaned": orphaned}
