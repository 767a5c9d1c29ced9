"""/metrics of the real stack tells the truth (issue 28): every family has a series from the
start, the alert rules name only metrics it exports, and after ``kill -9`` of Daphne and its
restart the open-connections gauge equals the streams really open."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AsyncExitStack

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.lifecycle import started
from tests.e2e.stack import Stack
from tests.test_metrics import GUIDE_FAMILIES, expected_zero_series
from tests.test_prometheus_rules import rule_metric_names
from tests.waiting import until
from ticker import metrics_dir

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)
TOKEN = "e2e-metrics-token"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
# Families no event of a fresh stack touches: all zero before the first client.
QUIET = (
    "ticker_connections_open",
    "ticker_frames_dropped_total",
    "ticker_slow_client_closes_total",
    "ticker_protocol_closes_total",
    "ticker_producer_window_failures_total",
    "ticker_channel_layer_errors_total",
    "ticker_celery_task_failures_total",
)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own: no test has connected or counted anything on it yet."""
    with started(Stack(tmp_path_factory.mktemp("metrics"), extra_env={"METRICS_TOKEN": TOKEN})) as stack:
        yield stack


def scrape(stack: Stack) -> Samples:
    request = urllib.request.Request(f"{stack.base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def gauge(samples: Samples) -> dict[str, float]:
    return {dict(labels)["endpoint"]: v for (name, labels), v in samples.items() if name == "ticker_connections_open"}


def total(samples: Samples, name: str) -> float:
    return sum(v for (sample, _), v in samples.items() if sample == name)


def test_every_family_has_a_series_before_any_event(fresh: Stack) -> None:
    samples = scrape(fresh)
    names = {name for name, _ in samples}
    assert set(GUIDE_FAMILIES) <= names
    missing = expected_zero_series() - set(samples)
    assert not missing, f"no series on a fresh stack: {sorted(missing)}"
    for name in QUIET:
        assert total(samples, name) == 0, name
    # The worker's own files are in the web process's answer: the market has ticked.
    assert total(samples, "ticker_producer_ticks_total") > 0
    assert total(samples, "ticker_producer_window_lag_seconds_count") > 0
    # Only the long-running processes wrote files: migrate, load_demo (manage.py) left none.
    pids = {name: p.popen.pid for name, p in fresh.processes.items() if p.popen is not None}
    assert {pids["web"], pids["worker"]} <= writer_pids(fresh) <= set(pids.values())


def writer_pids(stack: Stack) -> set[int]:
    """The pids of the processes with files in the stack's metrics directory (archives aside)."""
    writers = {path.name.removesuffix(".db").rsplit("_", 1)[1] for path in (stack.workdir / "prometheus").glob("*.db")}
    return {int(writer.split("-")[0]) for writer in writers if writer != metrics_dir.ARCHIVE_ID}


def test_the_alert_rules_use_only_exported_names(fresh: Stack) -> None:
    names = {name for name, _ in scrape(fresh)}
    used = rule_metric_names()
    assert used
    assert used <= names, f"rules name metrics /metrics does not export: {sorted(used - names)}"


async def open_streams(stack: Stack, stack_of: AsyncExitStack, streams: int, symbols: int) -> list[ClientConnection]:
    """``streams`` /ws/stream/ and ``symbols`` /ws/symbols/AAPL/ connections, each past its hello."""
    headers = {"Cookie": await asyncio.to_thread(stack.login), "Origin": stack.base_url}
    urls = [f"{stack.ws_url}/ws/stream/"] * streams + [f"{stack.ws_url}/ws/symbols/AAPL/"] * symbols
    sockets = [await stack_of.enter_async_context(connect(url, additional_headers=headers)) for url in urls]
    for ws in sockets:
        assert '"hello"' in await asyncio.wait_for(ws.recv(), 10)
    return sockets


async def gauge_becomes(stack: Stack, expected: dict[str, float], timeout: float) -> Samples:
    """The first scrape whose open-connections gauge is ``expected`` (and some frame was sent)."""

    async def check() -> Samples | None:
        samples = await asyncio.to_thread(scrape, stack)
        true = gauge(samples) == expected and total(samples, "ticker_frames_sent_total") > 0
        return samples if true else None

    return await until(check, timeout, f"ticker_connections_open == {expected}", interval=0.2)


async def test_open_connections_are_true_after_kill_9_and_restart(fresh: Stack) -> None:
    async with AsyncExitStack() as before:
        await open_streams(fresh, before, streams=4, symbols=2)
        counted = await gauge_becomes(fresh, {"stream": 4, "symbol": 2}, timeout=10)
        frames_before = total(counted, "ticker_frames_sent_total")
        old_web = fresh.processes["web"].popen.pid
        killed_at = time.monotonic()
        await asyncio.to_thread(fresh.kill_web)
        assert old_web in writer_pids(fresh), "kill -9 left its files behind (no atexit ran)"
        await asyncio.to_thread(fresh.start_web)
        restarted_at = time.monotonic()
        # No stream on the new process yet: the dead one's six are gone from the first
        # scrape, and what it sent is still counted (the new one has sent nothing).
        first = await asyncio.to_thread(scrape, fresh)
        assert gauge(first) == {"stream": 0, "symbol": 0}
        assert total(first, "ticker_frames_sent_total") >= frames_before
        assert old_web not in writer_pids(fresh)
        # The six dead sockets are closed by the exit stack (their server is gone).
    async with AsyncExitStack() as after:
        await open_streams(fresh, after, streams=2, symbols=1)
        opened_at = time.monotonic()
        samples = await gauge_becomes(fresh, {"stream": 2, "symbol": 1}, timeout=20)
        true_at = time.monotonic()
        logger.info(
            "gauge true %.2f s after kill -9: restart served pages at %.2f s, 3 streams open at %.2f s",
            true_at - killed_at,
            restarted_at - killed_at,
            opened_at - killed_at,
        )
        assert total(samples, "ticker_frames_sent_total") >= frames_before
