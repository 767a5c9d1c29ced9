"""A trader's browser beside a crowd: first price and main-thread long tasks, measured.

``python -m bench.browser`` (``make bench-browser``; ``make bench`` runs it last) starts Ticker
as ``make bench`` does (one Daphne, a 50-symbol market at ``--rate`` ticks/s), connects
``--clients`` load dashboards of every symbol, then opens the dashboard in headless
Chromium as a trader and watches it for ``--seconds``:

* **first price**: when the grid showed its first price, and its first live tick, after
  navigation (``window.tickerMetrics``, set by ``static/js/dashboard.js``);
* **long tasks**: every main-thread task over 50 ms (the Long Tasks API), the longest,
  and how many, while the page streams the whole market.

It prints a table and writes ``bench/results/<stamp>-browser.json`` and ``.md``. The
targets (issue 25): first price <= 1 s, no long task over 50 ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import plan, results
from bench.clients import ClientGroup, client_specs
from bench.plan import RESULTS, Config, Scenario
from bench.procs import REPO
from bench.scenarios import RunContext, connect
from bench.targets import TickerTarget

logger = logging.getLogger("bench.browser")

FIRST_PRICE_TARGET_MS = 1000
LONG_TASK_MS = 50
# The soak's own "is it still streaming" step: the page must keep counting ticks.
PROGRESS_TIMEOUT_MS = 10_000


def summary(first: dict[str, Any], long_tasks: list[dict[str, int]], ticks: int, seconds: float) -> dict[str, Any]:
    """The figures of one watch: first price and tick, long tasks, and whether the targets hold."""
    durations = [t["ms"] for t in long_tasks]
    longest = max(durations, default=0)
    return {
        "first_price_ms": first.get("firstPrice"),
        "first_tick_ms": first.get("firstTick"),
        "long_tasks": len(durations),
        "longest_task_ms": longest,
        "median_long_task_ms": statistics.median(durations) if durations else 0,
        "worst_long_tasks": sorted(long_tasks, key=lambda t: -t["ms"])[:10],
        "ticks": ticks,
        "ticks_per_s": ticks / seconds if seconds else 0.0,
        "seconds": seconds,
        "first_price_ok": first.get("firstPrice") is not None and first["firstPrice"] <= FIRST_PRICE_TARGET_MS,
        "long_tasks_ok": longest <= LONG_TASK_MS,
    }


def watch(base_url: str, user: str, password: str, seconds: float, rate: float) -> dict[str, Any]:
    """Log in, load the dashboard, and watch it stream for ``seconds``."""
    from tests.e2e.chromium import OBSERVE_LONG_TASKS, launched

    with launched() as browser:
        # The probes are evaluated strings, which the page's CSP forbids (it does not change the page).
        context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        context.add_init_script(OBSERVE_LONG_TASKS)
        page = context.new_page()
        page.goto(f"{base_url}/accounts/login/")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_url(f"{base_url}/", timeout=15_000)
        # A plain load of the dashboard, timed from its navigation (not the login's).
        page.goto(f"{base_url}/")
        page.wait_for_function("window.tickerMetrics && window.tickerMetrics.firstTick !== null", timeout=15_000)
        first = page.evaluate("({...window.tickerMetrics})")
        start_ticks = page.evaluate("window.tickerStream.stats.ticks")
        started = time.monotonic()
        end = started + seconds
        while time.monotonic() < end:
            # Progress, not a sleep: about a second of the market's ticks at a time, or it stalled.
            seen = page.evaluate("window.tickerStream.stats.ticks")
            page.wait_for_function(f"window.tickerStream.stats.ticks > {seen + int(rate)}", timeout=PROGRESS_TIMEOUT_MS)
        ticks = page.evaluate("window.tickerStream.stats.ticks") - start_ticks
        long_tasks = page.evaluate("window.__longTasks")
        context.close()
    return summary(first, long_tasks, ticks, time.monotonic() - started)


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = Config()
    config.clients = [args.clients]
    config.symbols = args.symbols
    config.per_client = args.symbols
    # The load dashboards outlive the browser's watch (connect, page load, the window).
    config.duration = args.seconds + 30
    workdir = Path(tempfile.mkdtemp(prefix="ticker-bench-browser-"))
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    ctx = RunContext(config, workdir, stamp)
    target = TickerTarget(workdir, args.symbols, REPO, users=plan.users_needed(config))
    group = ClientGroup(workdir, f"browser beside {args.clients}")
    try:
        target.start(args.rate)
        target.wait_rate(args.rate)
        scenario = Scenario("stream", args.clients, args.rate, args.symbols)
        connected = connect(ctx, target, group, client_specs(config, target, scenario))
        dashboards = results.total(list(connected.values()), "connected")
        logger.info("%d load dashboards connected; opening the browser", dashboards)
        base_url = f"http://127.0.0.1:{target.web_ports[0]}"
        figures = watch(base_url, target.user, target.password, args.seconds, args.rate)
    finally:
        group.close()
        target.stop()
    return {
        "stamp": stamp,
        "clients": args.clients,
        "dashboards_connected": dashboards,
        "symbols": args.symbols,
        "rate": args.rate,
        **figures,
    }


def render(result: dict[str, Any]) -> str:
    worst = ", ".join(f"{t['ms']}@{t['at']}" for t in result["worst_long_tasks"]) or "none"
    return "\n".join(
        [
            "Browser beside the crowd (one Chromium tab streaming every symbol):",
            "| dashboards beside | symbols | ticks/s | first price ms | first tick ms | long tasks > 50 ms "
            "| longest ms | ticks seen/s | first price <= 1 s | no long task > 50 ms |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {result['dashboards_connected']} | {result['symbols']} | {result['rate']:.0f} "
            f"| {result['first_price_ms']:.0f} | {result['first_tick_ms']:.0f} | {result['long_tasks']} "
            f"| {result['longest_task_ms']} | {result['ticks_per_s']:.0f} "
            f"| {'yes' if result['first_price_ok'] else 'NO'} | {'yes' if result['long_tasks_ok'] else 'NO'} |",
            f"Worst long tasks (ms@ms after navigation): {worst}; watched {result['seconds']:.0f} s.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m bench.browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500, help="load dashboards beside the browser")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0, help="producer ticks/s over all symbols")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the browser is watched")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    result = run(args)
    text = render(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{result['stamp']}-browser.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{result['stamp']}-browser.md").write_text(text + "\n")
    logger.info("\n%s\nWritten: %s/%s-browser.json and .md", text, out, result["stamp"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
