"""`make screenshot`: start the real stack, log in with Chromium, save the dashboard as PNG.

The stack starts with a fresh market, which gets a day of generated history before it
ticks: the chart (1-minute candles, the default) is full and the sparklines have a shape
from the first load. The script sets a price alert on the charted symbol just above its
price with ``below`` (so the next tick fires it on the server), waits for its toast, and
hovers a candle so the crosshair and its OHLC readout show.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.chromium import launched
from tests.e2e.lifecycle import started
from tests.e2e.stack import TRADER, Stack
from tests.e2e.test_alerts_browser import api, current_price

CHARTED = "BTC-USD"
CANDLES = 1000

logger = logging.getLogger(__name__)


def main(out: Path, width: int = 1280, height: int = 800) -> None:
    # started(): every process is stopped even when one of them fails to come up.
    with started(Stack(Path(tempfile.mkdtemp(prefix="ticker-shot-")))) as stack, launched() as browser:
        # bypass_csp: wait_for_function evaluates its expression in the page, which the CSP forbids.
        context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
        page = context.new_page()
        page.goto(f"{stack.base_url}/")
        page.fill("input[name=username]", TRADER[0])
        page.fill("input[name=password]", TRADER[1])
        page.click("button[type=submit]")
        expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=10_000)
        page.click(f'#grid tr[data-symbol="{CHARTED}"] td.name')
        page.click(".intervals button[data-interval='1m']")
        expect(page.locator("#chart")).to_have_attribute("data-symbol", CHARTED)
        expect(page.locator("#chart")).to_have_attribute("data-state", "live", timeout=10_000)
        page.wait_for_function(f"window.tickerChart.info().count >= {CANDLES}", timeout=30_000)
        # A few live ticks into the forming candle and the grid's flashes.
        page.wait_for_function("window.tickerChart.info().stats.liveTicks >= 20", timeout=30_000)
        # A price alert the server fires on the next tick: its toast is in the picture.
        level = f"{current_price(page, CHARTED) * 1.002:.2f}"
        api(context, stack, "POST", "/api/alerts/", {"symbol": CHARTED, "condition": "below", "price": level})
        expect(page.locator('.toast[data-missed="false"]')).to_be_visible(timeout=10_000)
        # Crosshair on a recent closed candle: the readout shows its OHLC.
        box = page.locator("#chart").bounding_box()
        assert box is not None
        x = page.evaluate(
            "(t => t.chart.timeScale().timeToCoordinate(t.info().closed.at(-4).time))(window.tickerChart)"
        )
        page.mouse.move(box["x"] + x, box["y"] + box["height"] * 0.42)
        expect(page.locator(".readout")).to_have_attribute("data-hover", "true")
        page.screenshot(path=str(out))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png"))
