"""manage.py ticker_status on a host of the live stack: producers, positions, open streams."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time

import pytest
from websockets.asyncio.client import connect

from tests.e2e.api_tokens import create_token
from tests.e2e.stack import ROOT, Stack

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)
DEMO = ["AAPL", "BTC-USD", "EURUSD"]


def ticker_status(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it, with the environment of the stack's processes."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "ticker_status", *args],
        env=stack.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


async def test_ticker_status_reports_the_running_stack(stack_logs: Stack) -> None:
    _, token = create_token(stack_logs.session(), "status probe")
    async with connect(
        f"{stack_logs.ws_url}/ws/stream/", additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.recv()  # hello: the stream is open and counted
        # The web process publishes its count once per heartbeat (5 s): poll with a deadline.
        deadline = time.monotonic() + 30
        while True:
            status = json.loads((await asyncio.to_thread(ticker_status, stack_logs, "--json")).stdout)
            if status["open_streams"] >= 1 or time.monotonic() > deadline:
                break
        text = (await asyncio.to_thread(ticker_status, stack_logs)).stdout
    logger.info("ticker_status on the live stack:\n%s", text)

    web_pid = stack_logs.processes["web"].popen.pid
    assert [w["pid"] for w in status["web_processes"] if w["streams"] >= 1] == [web_pid], status["web_processes"]
    assert status["redis"] == {"url": stack_logs.redis.url, "database": 0}
    assert status["broker"]["database"] == 1
    # The stack's channel layer is its one Redis (no CHANNEL_LAYER_REDIS_URLS), and it answers.
    assert status["channel_layer"] == [{"url": stack_logs.redis.url, "database": 0, "reachable": True}]
    assert f"Channel layer (1 shard):\n  {stack_logs.redis.url} (database 0)  reachable\n" in text
    # One worker holds every demo symbol; its owner id names its pid.
    [producer] = status["producers"]
    assert int(producer["owner"].split(":")[1]) == stack_logs.lease_owner_pid("AAPL")
    assert set(DEMO) <= set(producer["symbols"])
    assert status["unheld_symbols"] == []
    assert status["last_window_age_ms"] is not None
    assert status["last_window_age_ms"] < 5000
    rows = {row["symbol"]: row for row in status["symbols"]}
    for symbol in DEMO:
        assert rows[symbol]["epoch"]
        assert rows[symbol]["seq"] > 0
    assert f"{producer['owner']}  " in text
    assert f":{web_pid}  " in text
