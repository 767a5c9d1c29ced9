"""One producer per symbol across workers, failover after kill -9, admin changes live on streams."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.e2e.client import Recorder
from tests.e2e.lifecycle import started
from tests.e2e.stack import ADMIN, Process, Stack, wait_for

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

SYMBOLS = ["AAPL", "BTC-USD", "EURUSD", "NVDA", "ETH-USD"]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with started(Stack(tmp_path_factory.mktemp("failover"))) as stack:
        stack.start_worker("w2")
        wait_for(lambda: "producer" in stack.processes["w2"].log.read_text(), 30, "the second worker's producer")
        yield stack


def recorder(stack: Stack, symbols: list[str]) -> Recorder:
    headers = {"Cookie": stack.login(), "Origin": stack.base_url}
    return Recorder(f"{stack.ws_url}/ws/stream/", headers, subscribe=symbols)


async def lease_holder(stack: Stack, symbol: str) -> Process:
    """The worker holding ``symbol``'s lease, once one does: a rebalance after a worker
    joined can leave it free for a round."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        owner = stack.lease_owner_pid(symbol)
        holder = next((p for p in stack.processes.values() if p.popen and p.popen.pid == owner), None)
        if holder is not None:
            return holder
        await asyncio.sleep(0.05)  # polling Redis, with the deadline above
    raise AssertionError(f"no worker of the stack holds {symbol}'s lease within 10 s")


def assert_no_duplicates(rec: Recorder) -> None:
    counts = Counter((t["symbol"], t["seq"]) for _, t in rec.ticks())
    duplicates = [key for key, n in counts.items() if n > 1]
    assert duplicates == [], f"duplicate (symbol, seq): {duplicates[:10]}"


async def test_two_workers_one_series_per_symbol_and_failover(two_workers: Stack) -> None:
    stack = two_workers
    async with recorder(stack, SYMBOLS) as rec:
        await rec.wait_for(lambda f: f["type"] == "ticks", timeout=10)
        start = time.monotonic()
        while time.monotonic() - start < 3:
            await rec.wait_for(lambda f: f["type"] == "ticks", timeout=5, after=time.monotonic())
        for symbol in SYMBOLS:
            seqs = [t["seq"] for _, t in rec.ticks(symbol)]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{symbol}: one contiguous series"

        # kill -9 the worker whose producer ticks AAPL.
        victim = await lease_holder(stack, "AAPL")
        owner = victim.popen.pid
        killed_at = time.monotonic()
        os.kill(owner, signal.SIGKILL)
        await asyncio.to_thread(victim.popen.wait)
        # What the dead producer committed is final now: a tick past it is the new owner's (a
        # tick published just before the kill may still be on its way to the recorder).
        last_seq = int(stack.market().hget("ticker:state:AAPL", "seq"))
        resumed_at, tick = await rec.wait_for_tick("AAPL", lambda t: t["seq"] > last_seq, timeout=10, after=killed_at)
        takeover = resumed_at - killed_at
        logger.info("failover: AAPL ticks resumed %.2f s after kill -9 of its worker", takeover)
        assert takeover <= 5.0
        assert stack.lease_owner_pid("AAPL") not in (None, owner)
        assert tick["seq"] == last_seq + 1, "the series continues where the dead producer's commits end"
        await rec.wait_for(lambda f: f["type"] == "ticks", timeout=5, after=time.monotonic())
        assert_no_duplicates(rec)
        victim.popen = None


async def test_admin_halt_and_shock_reach_open_streams_within_2s(two_workers: Stack) -> None:
    stack = two_workers
    admin = stack.session(*ADMIN)
    changelist = "/admin/dashboard/symbol/"
    page = admin.get(changelist + "?q=TSLA")
    pk = page.split('name="_selected_action" value="')[1].split('"')[0]
    async with recorder(stack, ["TSLA"]) as rec:
        await rec.wait_for(lambda f: f["type"] == "ticks", timeout=10)
        before = rec.ticks("TSLA")[-1][1]["price"]

        sent = time.monotonic()
        admin.post_form(changelist, {"action": "shock", "_selected_action": [pk], "apply": "1", "percent": "50"})
        arrived, _ = await rec.wait_for_tick("TSLA", lambda t: t["price"] > before * 1.4, timeout=5, after=sent)
        logger.info("admin shock to stream: %.3f s", arrived - sent)
        assert arrived - sent <= 2.0

        sent = time.monotonic()
        admin.post_form(changelist, {"action": "halt", "_selected_action": [pk]})

        def halted(frame: dict) -> bool:
            return frame["type"] == "symbols" and any(
                s["symbol"] == "TSLA" and s["status"] == "halted" for s in frame["symbols"]
            )

        arrived, _ = await rec.wait_for(halted, timeout=5, after=sent)
        logger.info("admin halt to stream: %.3f s", arrived - sent)
        assert arrived - sent <= 2.0
        # Halted means no ticks: none arrive after the producer saw the halt.
        quiet_from = time.monotonic() + 0.5
        await rec.wait_for(lambda f: f["type"] == "heartbeat", timeout=8, after=quiet_from)
        assert rec.ticks("TSLA", after=quiet_from) == []
        admin.post_form(changelist, {"action": "resume", "_selected_action": [pk]})
        resumed = time.monotonic()
        await rec.wait_for_tick("TSLA", lambda t: True, timeout=5, after=resumed)


async def test_a_clean_worker_stop_hands_its_symbols_over_at_once(two_workers: Stack) -> None:
    """SIGTERM (a deploy, a rolling restart): the leases are released, not left to expire."""
    stack = two_workers
    live = [p for p in stack.processes.values() if p.name in {"worker", "w2", "w3"} and p.alive()]
    if len(live) < 2:  # the kill -9 above took one: a worker to hand over to
        stack.start_worker("w3")
        wait_for(lambda: "producer" in stack.processes["w3"].log.read_text(), 30, "the third worker's producer")
    async with recorder(stack, ["AAPL"]) as rec:
        await rec.wait_for_tick("AAPL", lambda t: True, timeout=10, after=time.monotonic())
        leaving = await lease_holder(stack, "AAPL")
        owner = leaving.popen.pid
        stopped_at = time.monotonic()
        # SIGTERM, then wait for the exit (Celery's warm shutdown) on a thread: waiting on this
        # loop would hold back the recorder, and every tick during the wait would be stamped as
        # arriving at the exit, a silence as long as the shutdown whatever the handover took.
        await asyncio.to_thread(leaving.stop)
        exited = time.monotonic() - stopped_at
        await rec.wait_for_tick("AAPL", lambda t: True, timeout=5, after=time.monotonic())
        assert stack.lease_owner_pid("AAPL") not in (None, owner)
        ticks = rec.ticks("AAPL")
        seqs = [t["seq"] for _, t in ticks]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "one series, no gap, no repeat"
        # AAPL ticks every 250 ms: the longest silence around the stop is the handover.
        arrivals = [arrived for arrived, _ in ticks if arrived >= stopped_at - 1]
        handover = max(b - a for a, b in itertools.pairwise(arrivals))
        logger.info("clean stop: the worker exited in %.2f s, AAPL was silent %.2f s at most", exited, handover)
        assert handover < 1.0, "a released lease is taken within an acquire round (0.5 s), not at expiry (3 s)"
    # Asked to stop twice (the shutdown signal, then the step): the second is a no-op, not an error.
    assert "Error on stopping ProducerStep" not in leaving.log.read_text()
