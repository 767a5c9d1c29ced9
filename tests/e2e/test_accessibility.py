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
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.stack import ADMIN, ROOT, TRADER, Stack
from tests.e2e.test_browser import ConsoleLog, expect_live, log_in, manage

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
logger = logging.getLogger(__name__)

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = {"serious", "critical"}
RESET_PREFERENCES = (
    f"from dashboard.models import Preference; Preference.objects.filter(user__username={TRADER[0]!r}).delete()"
)
ZONE = "America/New_York"  # the browser's own zone in these tests: not UTC, so the switch shows


@pytest.fixture
def context(browser: Browser, stack_logs: Stack) -> Iterator[BrowserContext]:
    # bypass_csp: axe-core is injected as a script tag, which the pages' CSP (script-src 'self') refuses.
    opened = browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id=ZONE, bypass_csp=True)
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


def test_shortcut_help_opens_with_question_mark_and_movers_are_reachable_by_keyboard(
    page: Page, stack_logs: Stack
) -> None:
    open_dashboard(page, stack_logs)
    help_dialog = page.locator("dialog.help-dialog")
    expect(help_dialog).to_be_hidden()
    page.keyboard.press("?")
    expect(help_dialog).to_be_visible()
    expect(help_dialog.get_by_role("heading", name="Keyboard shortcuts")).to_be_visible()
    assert summary(axe_violations(page)) == []
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    page.click("[data-action=help]")
    expect(help_dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()

    # From the top of the page, Tab reaches the movers tape; Enter charts the mover.
    page.evaluate("document.activeElement.blur()")
    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("!!document.activeElement.closest('#tape')"):
            break
    else:
        raise AssertionError("Tab never reached the movers tape")
    focused = page.evaluate("document.activeElement.closest('li').dataset.symbol")
    expect(page.locator("#tape .tape-track")).to_have_css("animation-play-state", "paused")
    page.keyboard.press("Enter")
    expect(page.locator("#chart")).to_have_attribute("data-symbol", focused)
    # The strip's second copy (for the seamless loop) is out of the tab order.
    assert page.evaluate(
        "[...document.querySelectorAll('#tape ul[aria-hidden=true] button')].every(b => b.tabIndex < 0)"
    )


def candle_clock(page: Page) -> tuple[int, str]:
    """The last candle's start (s) and the HH:MM the chart's legend shows for it."""
    info = page.evaluate(
        "(() => { const i = window.tickerChart.info();"
        " return [i.last.time, document.querySelector('.readout .t').textContent] })()"
    )
    return info[0], info[1]


def expect_clock(page: Page, zone: str) -> None:
    """The chart legend shows the last candle's time in ``zone`` (polled: a new candle may open)."""
    want = ""
    for _ in range(50):
        start, shown = candle_clock(page)
        want = datetime.fromtimestamp(start, UTC).astimezone(ZoneInfo(zone)).strftime("%H:%M")
        if shown.endswith(want):
            return
        page.wait_for_timeout(100)  # one more animation frame or two for the legend
    raise AssertionError(f"chart legend {shown!r} is not {want} in {zone}")


def test_clock_and_palette_are_each_traders_own_and_remembered(page: Page, stack_logs: Stack) -> None:
    open_dashboard(page, stack_logs)
    html = page.locator("html")
    expect(html).to_have_attribute("data-clock", "local")
    expect(page.locator(".chart-tools [data-field=clock]")).to_have_text(f"Local ({ZONE})")
    expect_clock(page, ZONE)

    saved = "**/settings/preferences/"
    with page.expect_response(saved) as answer:
        page.keyboard.press("t")
    assert answer.value.ok
    expect(html).to_have_attribute("data-clock", "utc")
    expect(page.locator(".chart-tools button.tz")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".chart-tools [data-field=clock]")).to_have_text("UTC")
    expect_clock(page, "UTC")

    with page.expect_response(saved) as answer:
        page.click("[data-pref=palette]")
    assert answer.value.json() == {"clock": "utc", "palette": "cb"}
    expect(html).to_have_attribute("data-palette", "cb")
    colours = page.evaluate(
        "(() => { const o = window.tickerChart.candleSeries.options();"
        " const s = getComputedStyle(document.documentElement);"
        " return [o.upColor, o.downColor, s.getPropertyValue('--up').trim(), s.getPropertyValue('--down').trim()] })()"
    )
    assert colours == ["#5aa9ff", "#ff9f40", "#5aa9ff", "#ff9f40"]
    assert summary(axe_violations(page)) == []

    page.reload()
    expect_live(page)
    expect(html).to_have_attribute("data-clock", "utc")
    expect(html).to_have_attribute("data-palette", "cb")
    expect(page.locator("[data-pref=palette]")).to_have_attribute("aria-pressed", "true")

    # Stored on the server: the trader has them in a fresh browser too (new context)...
    other = page.context.browser.new_context(timezone_id=ZONE, bypass_csp=True)
    try:
        elsewhere = other.new_page()
        log_in(elsewhere, stack_logs)
        expect(elsewhere.locator("html")).to_have_attribute("data-palette", "cb")
        expect(elsewhere.locator("html")).to_have_attribute("data-clock", "utc")
    finally:
        other.close()
    # ...and another trader in this browser has their own (default) preferences.
    page.click("nav.account button[type=submit]")
    log_in(page, stack_logs, user=ADMIN)
    expect(html).to_have_attribute("data-clock", "local")
    expect(html).to_have_attribute("data-palette", "standard")
    # The trader's defaults again, for the other tests that log in as them.
    manage(stack_logs, RESET_PREFERENCES)


# The newest trade's time as the tape shows it equals its ts in the browser's zone (the
# context's ZONE) or in UTC, read with Date's own getters (not the page's formatter).
TAPE_CLOCK = """utc => {
  const row = document.querySelector('.time-sales tbody tr');
  const newest = window.tickerBook.trades.rows[0];
  if (!row || !newest || Number(row.dataset.id) !== newest.id) return false;
  const d = new Date(newest.ts);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  const [h, m, s] = utc
    ? [d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
    : [d.getHours(), d.getMinutes(), d.getSeconds()];
  return row.querySelector('.ts-time').textContent === `${p(h)}:${p(m)}:${p(s)}.${p(d.getMilliseconds(), 3)}`;
}"""


def test_order_book_is_named_reachable_and_has_no_serious_axe_violation(page: Page, stack_logs: Stack) -> None:
    """The book on the symbol page and behind the dashboard's toggle: axe-clean, named, by keyboard."""
    log_in(page, stack_logs, "/symbols/BTC-USD/")
    expect_live(page)
    book = page.locator("#book")
    expect(book).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator(".time-sales tbody tr").first).to_be_visible(timeout=20_000)
    expect(page.locator("#book .depth")).to_have_attribute("data-state", "drawn")
    expect(page.get_by_role("heading", name="Order book BTC-USD")).to_be_visible()
    expect(page.get_by_role("table", name="Order book BTC-USD")).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(r"^Cumulative depth of BTC-USD: best bid [\d,.]+"))).to_be_visible()
    expect(page.get_by_role("region", name=re.compile(r"^Time & sales"))).to_be_visible()
    assert summary(axe_violations(page)) == []
    # Bids and buys in the trader's palette (standard: --up green).
    up = page.evaluate("getComputedStyle(document.documentElement).getPropertyValue('--up').trim()")
    assert up == "#16c784"
    expect(page.locator(".ladder tbody.bids tr:first-child .lv-px")).to_have_css("color", "rgb(22, 199, 132)")
    # The tape's times follow the clock preference: local, then UTC (T), then local again.
    try:
        assert page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == ZONE
        page.wait_for_function(TAPE_CLOCK, arg=False, timeout=5_000)
        with page.expect_response("**/settings/preferences/"):
            page.keyboard.press("t")
        page.wait_for_function(TAPE_CLOCK, arg=True, timeout=5_000)
        with page.expect_response("**/settings/preferences/"):
            page.keyboard.press("t")
        expect(page.locator("html")).to_have_attribute("data-clock", "local")
    finally:
        manage(stack_logs, RESET_PREFERENCES)

    page.goto(f"{stack_logs.base_url}/")
    expect_live(page)
    expect(page.locator("#chart")).to_have_attribute("data-state", "live", timeout=15_000)
    # Tab reaches the toggle; Space turns the book on.
    page.evaluate("document.activeElement.blur()")
    for _ in range(90):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('.chart-tools [data-action=book]')"):
            break
    else:
        raise AssertionError("Tab never reached the order book toggle")
    page.keyboard.press("Space")
    toggle = page.get_by_role("button", name="Order book")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(book).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator(".time-sales tbody tr").first).to_be_visible(timeout=20_000)
    expect(page.locator("#book .depth")).to_have_attribute("data-state", "drawn")
    assert summary(axe_violations(page)) == []
    # Past the toggle, Tab goes on into the book: the tape's scrolling region takes focus.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('#book .ts-scroll')"):
            break
    else:
        raise AssertionError("Tab never reached the time & sales region")
