"""Debian's Chromium, headless, as every browser test and `make screenshot` launch it.

Playwright cannot download a browser here; it drives /usr/bin/chromium. The flags keep
it off the network it cannot reach (background services, QUIC) and out of a sandbox
that root cannot use.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Every main-thread task over 50 ms from navigation on, into ``window.__longTasks``
# (``{at, ms}``, ms after navigation): an init script of the browser tests and bench/browser.py.
OBSERVE_LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    window.__longTasks.push({ at: Math.round(entry.startTime), ms: Math.round(entry.duration) });
  }
}).observe({ type: "longtask", buffered: true });
"""


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is required: `make test` installs it (apt-get install chromium)"
    return path


@contextmanager
def launched(extra_args: Sequence[str] = ()) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()
