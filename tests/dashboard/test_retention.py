"""Candle retention: a month of a simulated market stays within a stated size."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from django.conf import settings

from dashboard.market.candles import INTERVALS_MS
from dashboard.models import Candle, Symbol
from dashboard.services import prune_candles, store_history
from workers.backfill import DAY_MS, HOUR_MS, generate_history
from workers.simulator import SymbolSpec

logger = logging.getLogger(__name__)

RETENTION = settings.TICKER["CANDLE_RETENTION_MS"]
START = 1_800_000_000_000 - 1_800_000_000_000 % DAY_MS


def bound(interval: str, days: int) -> int:
    """Rows one symbol may hold in ``interval`` after ``days`` of market with the retention."""
    kept = RETENTION.get(interval) or days * DAY_MS
    return min(kept, days * DAY_MS) // INTERVALS_MS[interval] + 1


@pytest.mark.django_db
def test_a_month_of_market_stays_within_its_stated_size() -> None:
    """31 simulated days, stored a day at a time as the flush would, pruned as beat does.

    Stated size per symbol (defaults: 5 s for 6 h, 1 m for 30 days, 5 m for a year,
    15 m and 1 h for good): at most 4,321 + 43,201 + 8,929 + 2,977 + 745 = 60,173 rows
    after 31 days, of which only the 5 m, 15 m and 1 h rows keep growing (3,672 a year).
    """
    days = 31
    Symbol.objects.create(symbol="AAA", name="Triple A", initial_price=Decimal("100"))
    spec = SymbolSpec(symbol="AAA", initial_price=100.0, volatility=0.5)
    price = 100.0
    peak: dict[str, int] = {}
    for day in range(days):
        start, end = START + day * DAY_MS, START + (day + 1) * DAY_MS
        # 5 s candles of the day's last 7 hours only: more than the 6 h kept, so pruning
        # has work every day, without inserting 17,280 rows a day in a unit test.
        history = generate_history(
            spec, end_ms=end, start_ms=start, start_price=price, seed=day, step_ms=5000, keep_ms={"5s": 7 * HOUR_MS}
        )
        price = history.mid
        store_history("AAA", [c for candles in history.closed.values() for c in candles])
        while prune_candles(end, RETENTION, batch=2000, max_batches=5):
            pass  # each call is bounded; beat's next run goes on where it stopped
        for interval in INTERVALS_MS:
            count = Candle.objects.filter(interval=interval).count()
            peak[interval] = max(peak.get(interval, 0), count)
    logger.info("rows per interval after %d days: %s", days, peak)
    for interval in INTERVALS_MS:
        assert peak[interval] <= bound(interval, days), interval
    assert sum(peak.values()) <= 60_173
    # The 1-minute history reaches back 30 days, not further.
    oldest = Candle.objects.filter(interval="1m").order_by("start_ms").first()
    assert oldest.start_ms >= START + days * DAY_MS - RETENTION["1m"]


@pytest.mark.django_db
def test_pruning_is_bounded_per_call() -> None:
    symbol = Symbol.objects.create(symbol="BBB", name="Double B", initial_price=Decimal("20"))
    Candle.objects.bulk_create(
        Candle(symbol=symbol, interval="5s", start_ms=i * 5000, open=1, high=1, low=1, close=1, volume=1)
        for i in range(1000)
    )
    now = 10 * DAY_MS
    assert prune_candles(now, {"5s": HOUR_MS}, batch=100, max_batches=3) == {"5s": 300}
    assert Candle.objects.count() == 700
    assert prune_candles(now, {"5s": HOUR_MS, "1h": None}, batch=1000) == {"5s": 700}
    assert prune_candles(now, {"5s": HOUR_MS}) == {}
