"""`make screenshot`: start the real stack, log in with Chromium, save the dashboard as PNG.

The stack starts with an empty market, so the script waits (about two minutes) until
the chart holds two minutes of 5 s candles and the sparklines have a shape, then
hovers a candle so the crosshair and its OHLC readout show.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from tests.e2e.stack import TRADER, Stack
from tests.e2e.test_browser import CHROMIUM_ARGS, chromium_path

CHARTED = "BTC-USD"
CANDLES = 26

logger = logging.getLogger(__name__)


def main(out: Path, width: int = 1280, height: int = 800) -> None:
    stack = Stack(Path(tempfile.mkdtemp(prefix="ticker-shot-")))
    stack.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{stack.base_url}/")
            page.fill("input[name=username]", TRADER[0])
            page.fill("input[name=password]", TRADER[1])
            page.click("button[type=submit]")
            expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=10_000)
            page.click(f'#grid tr[data-symbol="{CHARTED}"] td.name')
            page.click(".intervals button[data-interval='5s']")
            expect(page.locator("#chart")).to_have_attribute("data-state", "live", timeout=10_000)
            logger.info("waiting for %d candles of 5 s on a fresh market (about %d s)", CANDLES, CANDLES * 5)
            page.wait_for_function(f"window.tickerChart.info().count >= {CANDLES}", timeout=CANDLES * 5_000 + 60_000)
            # Crosshair on a recent closed candle: the readout shows its OHLC.
            box = page.locator("#chart").bounding_box()
            assert box is not None
            x = page.evaluate(
                "(t => t.chart.timeScale().timeToCoordinate(t.info().closed.at(-4).time))(window.tickerChart)"
            )
            page.mouse.move(box["x"] + x, box["y"] + box["height"] * 0.42)
            expect(page.locator(".readout")).to_have_attribute("data-hover", "true")
            page.screenshot(path=str(out))
            browser.close()
    finally:
        stack.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png"))
