"""Headless Chromium (Debian's, driven by Playwright) against the real stack."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.e2e.stack import TRADER, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is required: `make test` installs it (apt-get install chromium)"
    return path


# Module scope: Playwright's sync API holds an event loop on this thread while it
# runs, which asyncio tests in other modules must not inherit.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, stack_logs: Stack) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    opened.on("console", on_console)
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == [], f"console errors: {errors}"


def log_in(page: Page, stack: Stack, path: str = "/") -> None:
    page.goto(f"{stack.base_url}{path}")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    page.fill("input[name=username]", TRADER[0])
    page.fill("input[name=password]", TRADER[1])
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{stack.base_url}{path}")


def wait_for_change(page: Page, selector: str, timeout_ms: int = 10_000) -> None:
    """The text at ``selector`` leaves its placeholder, then changes again: it is live."""
    cell = page.locator(selector)
    expect(cell).not_to_have_text("—", timeout=timeout_ms)
    first = cell.inner_text()
    page.wait_for_function(
        "([sel, first]) => document.querySelector(sel).textContent !== first",
        arg=[selector, first],
        timeout=timeout_ms,
    )


def test_dashboard_prices_move_after_login(page: Page, stack_logs: Stack) -> None:
    log_in(page, stack_logs)
    expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
    rows = page.locator("#grid tbody tr[data-symbol]")
    assert rows.count() >= 12
    for symbol in ("BTC-USD", "NVDA"):
        wait_for_change(page, f'#grid tr[data-symbol="{symbol}"] td.last')
    gaps = page.evaluate("window.tickerStream.stats.gaps")
    assert gaps == 0


def test_symbol_page_streams_from_the_sync_consumer(page: Page, stack_logs: Stack) -> None:
    log_in(page, stack_logs, "/symbols/BTC-USD/")
    expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
    wait_for_change(page, ".quote .last")
    expect(page.locator(".ticks tbody tr").first).to_be_visible()
    assert page.evaluate("window.tickerStream.path") == "/ws/symbols/BTC-USD/"
