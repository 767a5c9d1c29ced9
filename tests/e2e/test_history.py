"""History from the first second, on a stack started fresh for this module (as `make run` on
a fresh clone): how long until every demo symbol ticks and has a day of candles, the chart
full on first load, and the live series continuing from the generated past with no jump.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from dashboard.demo import DEMO_SYMBOLS
from tests.e2e.lifecycle import started
from tests.e2e.stack import HttpSession, Stack, wait_for
from tests.e2e.test_browser import ConsoleLog, expect_live, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
logger = logging.getLogger(__name__)

DEMO = [row[0] for row in DEMO_SYMBOLS]
VOLATILITY = {row[0]: row[5] for row in DEMO_SYMBOLS}
TIME_SCALE = 120  # the stack's TICKER_TIME_SCALE (default)
HISTORY_DEADLINE_S = 60


class FreshStack:
    """A stack started from nothing, with the times its start-up took."""

    def __init__(self, workdir: Path) -> None:
        self.stack = Stack(workdir)
        self.figures: dict[str, float] = {}
        self.session: HttpSession | None = None

    def candles(self, symbol: str, interval: str = "1m") -> list[dict]:
        """What a chart gets: the API's default number of candles."""
        return json.loads(self.session.get(f"/api/symbols/{symbol}/candles/?interval={interval}"))["candles"]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshStack]:
    fresh = FreshStack(tmp_path_factory.mktemp("fresh"))
    began = time.monotonic()
    with started(fresh.stack) as stack:
        fresh.figures["web_and_every_series_s"] = time.monotonic() - began
        market = stack.market()
        wait_for(lambda: all(market.exists(f"ticker:state:{s}") for s in DEMO), 60, "every demo symbol's series")
        fresh.figures["all_symbols_ticking_s"] = time.monotonic() - began
        fresh.session = stack.session()
        wait_for(
            lambda: all(len(fresh.candles(s)) >= 1000 for s in DEMO), HISTORY_DEADLINE_S, "a day of candles everywhere"
        )
        fresh.figures["all_histories_s"] = time.monotonic() - began
        logger.info("fresh start-up: %s", fresh.figures)
        yield fresh


def max_step_move(symbol: str) -> float:
    """Six standard deviations of one 5 s step of the symbol's own process (log return)."""
    return 6 * VOLATILITY[symbol] * math.sqrt(5 * TIME_SCALE / (365.25 * 24 * 3600))


def test_every_symbol_has_a_day_of_candles_within_60_s_of_start(fresh: FreshStack) -> None:
    assert fresh.figures["all_histories_s"] <= HISTORY_DEADLINE_S
    for symbol in DEMO:
        candles = fresh.candles(symbol)
        bound = max_step_move(symbol)
        assert len(candles) >= 1000
        # Up to the present: the forming candle last, or, in the moment between a minute's
        # end and the next tick, the candle that minute closed.
        last = candles[-1]
        assert last["closed"] is False or time.time() * 1000 - last["ts"] < 2 * 60_000, (symbol, last)
        # No hole and no jump: each candle follows the last, and opens near its close,
        # across the generated past and the live series that continues it.
        for before, after in itertools.pairwise(candles):
            assert after["ts"] - before["ts"] == 60_000, (symbol, before, after)
            assert abs(math.log(after["open"] / before["close"])) < bound, (symbol, before, after)
    # The coarser intervals cover the same day.
    for interval, per_day in (("5m", 288), ("15m", 96), ("1h", 24)):
        assert len(fresh.candles("BTC-USD", interval)) > per_day, interval


def test_the_live_price_continues_the_generated_past(fresh: FreshStack) -> None:
    quotes = {e["symbol"]: e for e in json.loads(fresh.session.get("/api/symbols/"))["symbols"]}
    for symbol in DEMO:
        last = fresh.candles(symbol)[-1]
        quote = quotes[symbol]["quote"]
        assert quote is not None, symbol
        assert last["low"] <= quote["price"] <= last["high"] or abs(math.log(quote["price"] / last["close"])) < 0.01


def test_the_chart_is_full_on_first_load(browser: Browser, fresh: FreshStack) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    console = ConsoleLog()
    page: Page = console.watch(context.new_page())
    try:
        log_in(page, fresh.stack)
        expect_live(page)
        expect(page.locator("#chart")).to_have_attribute("data-state", "live", timeout=15_000)
        info = page.evaluate("window.tickerChart.info()")
        assert info["interval"] == "1m"
        assert info["count"] >= 1000
        assert info["stats"]["loads"] == 1
        span_h = (info["last"]["time"] - info["closed"][0]["time"]) / 3600
        logger.info("chart on first load: %d candles over %.1f h", info["count"], span_h)
        assert span_h >= 16
        # Sparklines start full: five minutes of 5 s history in the first snapshot.
        points = page.evaluate("window.tickerMarket.quote('AAPL').spark.length")
        assert points >= 50
        assert console.unexpected() == []
    finally:
        context.close()
