"""Headless Chromium against the real stack: the API docs page loads nothing from outside
the site, and a trader creates and revokes a token on the settings page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.e2e.stack import TRADER, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def page(browser: Browser, stack_logs: Stack) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    opened.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    yield opened
    context.close()
    assert errors == [], f"console errors: {errors}"


def log_in(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.base_url}/accounts/login/")
    page.fill("input[name=username]", TRADER[0])
    page.fill("input[name=password]", TRADER[1])
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(f"{stack.base_url}/")


def test_the_api_docs_load_only_from_this_site(page: Page, stack_logs: Stack) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    failed: list[Request] = []
    page.on("requestfailed", lambda request: failed.append(request))
    page.goto(f"{stack_logs.base_url}/api/docs")
    # Swagger UI rendered the schema: one block per operation, tokens among them.
    expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
    expect(page.locator(".opblock-summary-path", has_text="/api/tokens/").first).to_be_visible()
    assert page.locator(".opblock").count() >= 10
    origin = urlsplit(stack_logs.base_url)
    outside = [u for u in requested if urlsplit(u).scheme in {"http", "https"} and urlsplit(u).netloc != origin.netloc]
    assert outside == [], f"requests to other sites: {outside}"
    assert any(u.endswith("/static/ninja/swagger-ui-bundle.js") for u in requested)
    assert any(u.endswith("/api/openapi.json") for u in requested)
    assert [r.url for r in failed] == []


def test_a_trader_creates_and_revokes_a_token_on_the_settings_page(page: Page, stack_logs: Stack) -> None:
    log_in(page, stack_logs)
    page.get_by_role("link", name="API tokens").click()
    page.wait_for_url(f"{stack_logs.base_url}/settings/tokens/")
    page.fill("input[name=name]", "browser e2e")
    page.check("input[name=read_only]")
    page.fill("input[name=password]", TRADER[1])  # a session alone makes no token
    page.click("button[type=submit].primary")
    secret = page.locator("input.secret-value").input_value()
    assert re.fullmatch(r"tkr_[A-Za-z0-9_-]{40,}", secret)
    row = page.locator("table.token-list tr", has_text="browser e2e")
    expect(row).to_contain_text(secret[:12])
    expect(row).to_contain_text("read-only")
    # The secret is shown once: a reload lists the token by its prefix only.
    page.goto(f"{stack_logs.base_url}/settings/tokens/")
    assert secret not in page.content()
    page.get_by_role("button", name="Revoke browser e2e").click()
    expect(page.get_by_role("status")).to_contain_text("Token revoked")
    expect(page.locator("table.token-list tr", has_text="browser e2e")).to_have_count(0)
