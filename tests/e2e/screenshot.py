"""`make screenshot`: start the real stack, log in with Chromium, save the dashboard as PNG."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from tests.e2e.stack import TRADER, Stack
from tests.e2e.test_browser import CHROMIUM_ARGS, chromium_path


def main(out: Path, width: int = 1280, height: int = 720) -> None:
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
            expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
            # Let sparklines fill in.
            page.wait_for_function("window.tickerStream.stats.ticks > 400", timeout=30_000)
            page.screenshot(path=str(out))
            browser.close()
    finally:
        stack.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png"))
