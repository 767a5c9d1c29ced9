"""The session's real stack, shared by the end-to-end and browser tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.e2e.chromium import launched
from tests.e2e.lifecycle import started
from tests.e2e.stack import Stack

logger = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with started(Stack(tmp_path_factory.mktemp("stack"))) as running:
        yield running


# Module scope: Playwright's sync API holds an event loop on this thread while it runs,
# which asyncio tests in other modules must not inherit.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium for a module's browser tests."""
    with launched() as running:
        yield running


@pytest.fixture
def stack_logs(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The stack, with its process logs printed when the test fails."""
    yield stack
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        logger.error("process logs after the failure:\n%s", stack.logs())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report
