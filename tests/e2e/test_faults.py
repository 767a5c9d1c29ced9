"""Faults under live clients: Redis restarted or frozen; no process exits, every client heals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.e2e.client import Recorder
from tests.e2e.lifecycle import started
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

SYMBOLS = ["AAPL", "BTC-USD", "EURUSD"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with started(Stack(tmp_path_factory.mktemp("faults"))) as running:
        yield running


def after_snapshot_contiguous(rec: Recorder, symbol: str, since: float) -> None:
    """Ticks after the last snapshot of ``symbol`` continue it without a gap."""
    snaps = [(t, f) for t, f in rec.frames if f["type"] == "snapshot" and f["symbol"] == symbol and t >= since]
    assert snaps, f"no fresh snapshot of {symbol}"
    at, snap = snaps[-1]
    seqs = [tick["seq"] for _, tick in rec.ticks(symbol, after=at)]
    assert seqs, f"no ticks of {symbol} after its snapshot"
    assert seqs == list(range(snap["seq"] + 1, snap["seq"] + 1 + len(seqs)))


async def test_redis_restart_heals_every_client_within_10s(stack: Stack) -> None:
    headers = {"Cookie": stack.login(), "Origin": stack.base_url}
    async with (
        Recorder(f"{stack.ws_url}/ws/stream/", headers, subscribe=SYMBOLS) as dashboard,
        Recorder(f"{stack.ws_url}/ws/symbols/AAPL/", headers) as symbol_page,
    ):
        for rec in (dashboard, symbol_page):
            await rec.wait_for(lambda f: f["type"] == "ticks", timeout=10)
        assert stack.redis is not None
        await asyncio.to_thread(stack.redis.stop)
        await asyncio.sleep(5)  # the outage itself, not synchronisation
        await asyncio.to_thread(stack.redis.start)
        back = time.monotonic()
        for rec in (dashboard, symbol_page):
            arrived, _ = await rec.wait_for(lambda f: f["type"] == "ticks", timeout=10, after=back)
            logger.info("live again %.2f s after Redis returned", arrived - back)
        # Redis came back empty: new epochs, which every client got as a fresh snapshot.
        await dashboard.wait_for(lambda f: f["type"] == "ticks", timeout=5, after=time.monotonic())
        for symbol in SYMBOLS:
            after_snapshot_contiguous(dashboard, symbol, back - 5)
        after_snapshot_contiguous(symbol_page, "AAPL", back - 5)
        assert all(p.alive() for p in stack.processes.values()), "no process exited"


async def test_a_frozen_redis_is_detected_by_timeouts_and_survived(stack: Stack) -> None:
    """SIGSTOP: Redis accepts nothing and answers nothing. Nothing may wait for it forever."""
    frozen_for = float(os.environ.get("TICKER_CHAOS_FREEZE_SECONDS", "12"))
    headers = {"Cookie": stack.login(), "Origin": stack.base_url}
    async with Recorder(f"{stack.ws_url}/ws/stream/", headers, subscribe=SYMBOLS) as dashboard:
        await dashboard.wait_for(lambda f: f["type"] == "ticks", timeout=10)
        assert stack.redis is not None
        assert stack.redis.process is not None
        redis_pid = stack.redis.process.pid
        os.kill(redis_pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            # The web process keeps serving: probes answer, streams keep their heartbeat.
            await dashboard.wait_for(lambda f: f["type"] == "heartbeat", timeout=8, after=frozen_at)
            assert await asyncio.to_thread(stack.web_ready)
            await asyncio.sleep(max(0.0, frozen_for - (time.monotonic() - frozen_at)))
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        thawed = time.monotonic()
        arrived, _ = await dashboard.wait_for(lambda f: f["type"] == "ticks", timeout=10, after=thawed)
        logger.info("frozen %.0f s; live again %.2f s after Redis resumed", frozen_for, arrived - thawed)
        await dashboard.wait_for(lambda f: f["type"] == "ticks", timeout=5, after=time.monotonic())
        # Redis kept its data: same epochs, and the client can fill any gap by resume.
        assert all(p.alive() for p in stack.processes.values()), "no process exited"
        worker_log = stack.processes["worker"].log.read_text()
        assert "producer window failed" in worker_log, "the producer noticed through a timeout"
