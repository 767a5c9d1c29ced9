"""A symbol deleted in the admin leaves every open dashboard, cleanly (headless Chromium).

The delete is a model delete, as the admin's is: ``post_delete`` announces the catalog
change after commit, every stream gets a ``symbols`` frame without it, and the page drops
it from the grid, the movers tape, the watchlist picker and the chart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.stack import ADMIN, Stack
from tests.e2e.test_browser import ConsoleLog, expect_live, log_in, manage

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
logger = logging.getLogger(__name__)

DOOMED = "ZZ-GONE"
# The admin account trades too; using it keeps the trader's watchlists as other tests expect.
SETUP = f"""
from django.contrib.auth import get_user_model
from dashboard.models import Symbol, Watchlist, WatchlistItem
from dashboard.watchlists import list_for
user = get_user_model().objects.get(username={ADMIN[0]!r})
list_for(user)
symbol = Symbol.objects.create(symbol={DOOMED!r}, name="Gone Corp", initial_price=42, volatility=3.0)
main = Watchlist.objects.filter(user=user).order_by("position", "id").first()
WatchlistItem.objects.create(watchlist=main, symbol=symbol, position=0)
solo = Watchlist.objects.create(user=user, name="Only the doomed", position=99)
WatchlistItem.objects.create(watchlist=solo, symbol=symbol)
"""
DELETE = f"from dashboard.models import Symbol; Symbol.objects.filter(symbol={DOOMED!r}).delete()"
CLEANUP = f"{DELETE}; from dashboard.models import Watchlist; Watchlist.objects.filter(name='Only the doomed').delete()"


@pytest.fixture
def doomed(stack_logs: Stack) -> Iterator[Stack]:
    manage(stack_logs, SETUP)
    yield stack_logs
    manage(stack_logs, CLEANUP)


def open_page(context: BrowserContext, console: ConsoleLog, stack: Stack, *, logged_in: bool = False) -> Page:
    page = console.watch(context.new_page())
    if logged_in:  # the context's session cookie already holds the login
        page.goto(f"{stack.base_url}/")
    else:
        log_in(page, stack, user=ADMIN)
    expect_live(page)
    return page


def test_a_deleted_symbol_leaves_every_open_dashboard(browser: Browser, doomed: Stack) -> None:
    console = ConsoleLog()
    # bypass_csp: wait_for_function evaluates its expression in the page, which the CSP forbids.
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    try:
        # Two dashboards: one charts the doomed symbol among others, one shows only it.
        among = open_page(context, console, doomed)
        row = among.locator(f'#grid tr[data-symbol="{DOOMED}"]')
        expect(row).to_be_visible()
        row.locator("td.name").click()
        expect(among.locator("#chart")).to_have_attribute("data-symbol", DOOMED)
        expect(among.locator("#chart")).to_have_attribute("data-state", "live", timeout=30_000)

        alone = open_page(context, console, doomed, logged_in=True)
        alone.get_by_role("tab", name="Only the doomed").click()
        expect(alone.locator("#grid tbody tr[data-symbol]")).to_have_count(1)
        expect(alone.locator("#chart")).to_have_attribute("data-symbol", DOOMED)
        for page in (among, alone):
            assert DOOMED in page.evaluate("[...window.tickerStream.wanted]")
            page.evaluate(
                "(() => { window.catalogFrames = 0; const s = window.tickerStream;"
                " const before = s.handlers.onSymbols;"
                " s.handlers.onSymbols = (x) => { window.catalogFrames += 1; before(x); }; })()"
            )

        sent = time.monotonic()
        manage(doomed, DELETE)
        for page in (among, alone):
            expect(page.locator(f'#grid tr[data-symbol="{DOOMED}"]')).to_have_count(0, timeout=5_000)
            expect(page.locator(f"select.wl-add option[value='{DOOMED}']")).to_have_count(0)
            expect(page.locator(f'#tape li[data-symbol="{DOOMED}"]')).to_have_count(0)
            page.wait_for_function(f"![...window.tickerStream.wanted].includes('{DOOMED}')", timeout=5_000)
            assert page.evaluate(f"window.tickerMarket.quote('{DOOMED}')") is None
            assert page.evaluate("window.catalogFrames") >= 1
        logger.info("deleted symbol gone from both dashboards after %.2f s", time.monotonic() - sent)

        # The chart moves to another symbol of the list; with nothing else shown it empties.
        expect(among.locator("#chart")).not_to_have_attribute("data-symbol", DOOMED)
        expect(among.locator("#chart")).to_have_attribute("data-state", "live")
        expect(among.locator(".chart-head [data-field=symbol]")).not_to_have_text(DOOMED)
        expect(alone.locator("#chart")).to_have_attribute("data-state", "idle")
        expect(alone.locator(".chart-head [data-field=symbol]")).to_have_text("—")
        expect(alone.locator("#grid tbody tr[data-symbol]")).to_have_count(0)
        expect(alone.get_by_role("tab", name="Only the doomed")).to_contain_text("0")
        assert console.unexpected() == [], console.unexpected()
    finally:
        context.close()
