"""Price alerts in headless Chromium against the real stack (Daphne, the worker's producer, beat).

A trader sets an alert from the chart panel just beyond the current price: the producer
fires it and the page shows a toast. An alert that fires while no page is open is shown
on the next visit (the symbol page here) and is then marked seen.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.stack import Stack
from tests.e2e.test_accessibility import axe_violations
from tests.e2e.test_browser import ConsoleLog, expect_live, log_in
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
logger = logging.getLogger(__name__)

SYMBOL = "AAPL"


@pytest.fixture
def context(browser: Browser, stack_logs: Stack) -> Iterator[BrowserContext]:
    # bypass_csp: Playwright evaluates the test's predicates as strings, which the pages' CSP
    # (no eval) refuses; test_browser.py's CSP test loads both pages under the real policy.
    opened = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    yield opened
    opened.close()


@pytest.fixture
def console() -> ConsoleLog:
    return ConsoleLog()


def watched(context: BrowserContext, console: ConsoleLog) -> Page:
    return console.watch(context.new_page())


def api(context: BrowserContext, stack: Stack, method: str, path: str, body: object = None) -> object:
    """A JSON call with the context's session cookie and CSRF token, as the page's own code makes it."""
    csrf = next((c["value"] for c in context.cookies() if c["name"] == "csrftoken"), "")
    response = context.request.fetch(
        f"{stack.base_url}{path}",
        method=method,
        headers={"Content-Type": "application/json", "X-CSRFToken": csrf, "Referer": f"{stack.base_url}/"},
        data=json.dumps(body) if body is not None else None,
    )
    assert response.ok, f"{method} {path}: {response.status} {response.text()}"
    return response.json() if response.status != 204 else None


def current_price(page: Page, symbol: str) -> float:
    page.wait_for_function(
        "s => window.tickerMarket.quote(s) !== undefined && window.tickerMarket.quote(s) !== null", arg=symbol
    )
    return page.evaluate("s => window.tickerMarket.quote(s).price", symbol)


def test_an_alert_set_from_the_chart_fires_and_shows_a_toast(
    context: BrowserContext, console: ConsoleLog, stack_logs: Stack
) -> None:
    page = watched(context, console)
    log_in(page, stack_logs)
    expect_live(page)
    page.click(f'#grid tr[data-symbol="{SYMBOL}"]')
    expect(page.locator('.chart-head [data-field="symbol"]')).to_have_text(SYMBOL)
    price = current_price(page, SYMBOL)
    # As if the trader allowed notifications and looked at another window when it fires.
    page.evaluate(
        """() => {
          window.notified = [];
          window.Notification = class {
            static permission = "granted";
            constructor(title, options) { window.notified.push({ title, body: options.body }); }
          };
          document.hasFocus = () => false;
        }"""
    )
    page.click(".chart-head [data-alert]")
    dialog = page.locator("dialog.alert-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".alert-symbol")).to_have_text(SYMBOL)
    assert axe_violations(page) == [], "the alert form is accessible"
    # "At or below" 2 % over the last price: the next tick crosses it.
    dialog.locator("select[name=condition]").select_option("below")
    dialog.locator("input[name=price]").fill(f"{price * 1.02:.2f}")
    set_at = time.monotonic()
    dialog.locator("button[type=submit]").click()
    expect(page.locator(".toast.note")).to_contain_text(f"Alert set: {SYMBOL} at or below")
    expect(dialog).to_be_hidden()
    toast = page.locator('.toast[data-missed="false"]')
    expect(toast).to_be_visible(timeout=5_000)
    shown_after = time.monotonic() - set_at
    expect(toast).to_contain_text(f"{SYMBOL} at or below")
    assert axe_violations(page) == [], "the toast is accessible"
    fired = api(context, stack_logs, "GET", "/api/alerts/?status=triggered")["alerts"]
    alert_id = int(toast.get_attribute("data-alert-id"))
    [mine] = [a for a in fired if a["id"] == alert_id]
    assert mine["triggered_price"] <= mine["price"]
    latency = page.evaluate("window.tickerAlerts.latencies")
    logger.info("alert toast %.2f s after setting it; crossing tick to frame: %s ms", shown_after, latency)
    assert len(latency) == 1
    assert latency[0] < 1_000, "the frame follows the crossing tick's window"
    [notified] = page.evaluate("window.notified")
    assert notified["title"] == f"Price alert: {SYMBOL}"
    assert f"{SYMBOL} at or below" in notified["body"]
    stored = re.search(rf"alert {alert_id} fired: .*\(stored (\d+) ms after the crossing tick\)", stack_logs.logs())
    logger.info("worker: alert stored and pushed %s ms after its crossing tick", stored.group(1) if stored else "?")
    # The page marked it seen: a later visit does not show it again.
    page.wait_for_function(
        "id => fetch('/api/alerts/?status=unseen').then(r => r.json()).then(b => !b.alerts.some(a => a.id === id))",
        arg=alert_id,
        timeout=5_000,
    )
    page.locator(".toast-close").first.click()
    expect(toast).to_have_count(0)
    assert console.unexpected() == [], console.unexpected()


def test_an_alert_that_fired_while_offline_is_shown_on_the_next_visit(
    context: BrowserContext, console: ConsoleLog, stack_logs: Stack
) -> None:
    page = watched(context, console)
    log_in(page, stack_logs)
    expect_live(page)
    price = current_price(page, SYMBOL)
    page.close()  # no page open from here on
    created = api(
        context,
        stack_logs,
        "POST",
        "/api/alerts/",
        {"symbol": SYMBOL, "condition": "above", "price": f"{price * 0.98:.2f}"},
    )
    wait_until(
        lambda: any(
            a["id"] == created["id"] for a in api(context, stack_logs, "GET", "/api/alerts/?status=unseen")["alerts"]
        ),
        10,
        "the alert to fire with no page open",
        interval=0.1,
    )
    page = watched(context, console)
    page.goto(f"{stack_logs.base_url}/symbols/{SYMBOL}/")
    expect_live(page)
    toast = page.locator(f'.toast[data-alert-id="{created["id"]}"]')
    expect(toast).to_be_visible(timeout=5_000)
    expect(toast).to_have_attribute("data-missed", "true")
    expect(toast).to_contain_text(re.compile(rf"{SYMBOL} at or above [\d,.]+"))
    page.wait_for_function(
        "id => fetch('/api/alerts/?status=unseen').then(r => r.json()).then(b => !b.alerts.some(a => a.id === id))",
        arg=created["id"],
        timeout=5_000,
    )
    # The symbol page sets alerts too, and lists those waiting on its symbol.
    page.click(".sym-head [data-alert]")
    dialog = page.locator("dialog.alert-dialog")
    dialog.locator("select[name=condition]").select_option("rise")
    dialog.locator("input[name=percent]").fill("50")
    dialog.locator("input[name=minutes]").fill("5")
    dialog.locator("button[type=submit]").click()
    expect(dialog).to_be_hidden()
    page.click(".sym-head [data-alert]")
    waiting = dialog.locator(".alert-list li[data-alert-id]")
    expect(waiting).to_have_count(1)
    expect(waiting).to_contain_text(f"{SYMBOL} rises 50 % within 5 min")
    waiting.locator("button").click()
    expect(waiting).to_have_count(0)
    assert console.unexpected() == [], console.unexpected()
