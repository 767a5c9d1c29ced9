"""Accessibility of the real pages in headless Chromium: axe-core, keyboard, palette, clock.

axe-core comes from ``node_modules`` (pinned in package.json / package-lock.json,
installed by ``make test`` with ``npm ci``) and is injected into each page as it runs
against the real stack; any serious or critical violation fails the test with its rule,
impact and the elements it names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.e2e.stack import ADMIN, ROOT, TRADER, Stack
from tests.e2e.test_browser import CHROMIUM_ARGS, ConsoleLog, chromium_path, expect_live, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
logger = logging.getLogger(__name__)

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = {"serious", "critical"}
ZONE = "America/New_York"  # the browser's own zone in these tests: not UTC, so the switch shows


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser, stack_logs: Stack) -> Iterator[BrowserContext]:
    opened = browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id=ZONE)
    yield opened
    opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    console = ConsoleLog()
    yield console.watch(context.new_page())
    assert console.unexpected() == [], f"console errors: {console.unexpected()}"


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the page as it is now."""
    assert AXE.exists(), "axe-core is missing: `make test` installs it with `npm ci`"
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    found = [v for v in result["violations"] if v["impact"] in BLOCKING]
    for v in found:
        targets = [" ".join(map(str, n["target"])) for n in v["nodes"]]
        logger.error("%s (%s) on %d elements: %s; %s", v["id"], v["impact"], len(targets), targets[:8], v["help"])
    return found


def summary(violations: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(v["id"], len(v["nodes"])) for v in violations]


def open_dashboard(page: Page, stack: Stack, user: tuple[str, str] = TRADER) -> None:
    log_in(page, stack, user=user)
    expect_live(page)
    expect(page.locator("#chart")).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator("#tape .tape-strip li").first).to_be_visible(timeout=10_000)
    expect(page.locator('#grid tr[data-symbol="AAPL"] td.last')).not_to_have_text("—")


def test_login_dashboard_and_symbol_page_have_no_serious_axe_violation(page: Page, stack_logs: Stack) -> None:
    page.goto(f"{stack_logs.base_url}/accounts/login/")
    assert summary(axe_violations(page)) == []

    open_dashboard(page, stack_logs)
    assert summary(axe_violations(page)) == []

    page.goto(f"{stack_logs.base_url}/symbols/BTC-USD/")
    expect_live(page)
    expect(page.locator("#chart")).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator(".ticks tbody tr").first).to_be_visible()
    assert summary(axe_violations(page)) == []
