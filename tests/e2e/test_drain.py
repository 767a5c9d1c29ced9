"""A web process's graceful stop on the real stack: SIGTERM, 1012 on both endpoints, resume.

The shared stack has one Daphne: while it is down its clients retry until it is back, as
they would reach another process behind a balancer (``test_rolling_restart.py`` runs that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e import rolling
from tests.e2e.client import ResumingClient
from tests.e2e.stack import Stack
from tests.waiting import until

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

SYMBOLS = ["AAPL", "BTC-USD"]
DASHBOARDS = 12


def refuses(port: int) -> bool:
    """Whether a TCP connection to ``port`` on 127.0.0.1 is refused right now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


async def symbol_stream_close_code(url: str, headers: dict[str, str], opened: asyncio.Event) -> int | None:
    """Open the single-symbol stream, wait for its snapshot, then for the server's close."""
    async with connect(url, additional_headers=headers, open_timeout=5) as ws:
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:
                if '"snapshot"' in text:
                    opened.set()
        return ws.close_code


async def test_sigterm_sends_every_stream_elsewhere_with_1012_and_exits_when_drained(stack_logs: Stack) -> None:
    stack = stack_logs
    headers = {"Cookie": stack.login(), "Origin": stack.base_url}
    dashboards = [ResumingClient(f"{stack.ws_url}/ws/stream/", headers, SYMBOLS) for _ in range(DASHBOARDS)]
    symbol_opened = asyncio.Event()
    symbol_stream = asyncio.create_task(
        symbol_stream_close_code(f"{stack.ws_url}/ws/symbols/AAPL/", headers, symbol_opened)
    )
    web = stack.processes["web"]
    try:
        for client in dashboards:
            client.start()
        for client in dashboards:
            await client.wait_for(lambda f: f["type"] == "ticks", timeout=15)
        await asyncio.wait_for(symbol_opened.wait(), 10)

        assert web.popen is not None
        signalled = time.monotonic()
        os.killpg(web.popen.pid, signal.SIGTERM)
        # Drained, not cut off at the bound (TICKER_DRAIN_SECONDS, 10 s): 13 streams are
        # closed 10 ms apart and answer within a round trip.
        returncode = await asyncio.to_thread(web.popen.wait, 8)
        exited = time.monotonic() - signalled
        assert returncode == 0, stack.logs()
        assert await asyncio.wait_for(symbol_stream, 5) == 1012
        # The first close, the last close, per client: each was told to go, none was cut.
        closes = sorted(client.drops[0] for client in dashboards)
        assert [client.close_codes[0] for client in dashboards] == [1012] * DASHBOARDS
        # Spread, not all at once: 12 + 1 closes 10 ms apart span 120 ms as scheduled.
        assert closes[-1] - closes[0] >= 0.06, closes
        log = (stack.workdir / "web.log").read_text()
        assert "streams closed with 1012); stopping" in log
        assert refuses(stack.web_port), "a stopped process must not accept"

        await asyncio.to_thread(stack.start_web)
        for client in dashboards:
            await client.wait_for(lambda f: f["type"] == "ticks", timeout=20, after=time.monotonic())

        def resumed() -> bool:
            return all(all(c.positions[s]["seq"] > 0 for s in SYMBOLS) for c in dashboards)

        await until(resumed, 10, "every dashboard ticking again")
        for client in dashboards:
            assert client.gaps == []
            assert client.duplicates == []
            # Resumed with since, not restarted from a snapshot: one snapshot per symbol.
            snapshots = [f for _, f in client.frames if f["type"] == "snapshot"]
            assert len(snapshots) == len(SYMBOLS), snapshots
        logger.info("web exited %.2f s after SIGTERM; closes spread over %.3f s", exited, closes[-1] - closes[0])
    finally:
        symbol_stream.cancel()
        for client in dashboards:
            await client.stop()
        if not web.alive():
            await asyncio.to_thread(stack.start_web)


async def test_sighup_replaces_the_process_on_its_port_and_each_client_moves_once(stack_logs: Stack) -> None:
    stack = stack_logs
    headers = {"Cookie": stack.login(), "Origin": stack.base_url}
    dashboards = [ResumingClient(f"{stack.ws_url}/ws/stream/", headers, SYMBOLS) for _ in range(DASHBOARDS)]
    web = stack.processes["web"]
    assert web.popen is not None
    predecessor = web.popen
    refused: list[float] = []
    watching = True

    async def watch_the_port() -> None:
        # Every 20 ms through the replacement: the port must never refuse a connection.
        while watching:
            if await asyncio.to_thread(refuses, stack.web_port):
                refused.append(time.monotonic())
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch_the_port())
    try:
        for client in dashboards:
            client.start()
        for client in dashboards:
            await client.wait_for(lambda f: f["type"] == "ticks", timeout=15)
        signalled = time.monotonic()
        os.kill(predecessor.pid, signal.SIGHUP)
        # The successor starts (about 3 s of imports), listens beside it, then retires it.
        assert await asyncio.to_thread(predecessor.wait, 30) == 0, stack.logs()
        replaced = time.monotonic() - signalled
        for client in dashboards:
            await client.wait_for(lambda f: f["type"] == "ticks", timeout=10, after=time.monotonic())
        watching = False
        await watcher
        assert refused == [], f"the port refused {len(refused)} connections during the replacement"
        for client in dashboards:
            assert client.close_codes[:1] == [1012]
            assert len(client.servers) == 2, "moved once: from the old process to its successor"
            assert client.gaps == []
            assert client.duplicates == []
        log = (stack.workdir / "web.log").read_text()
        assert "SIGHUP: started successor" in log
        assert "sent it SIGTERM to drain" in log
        logger.info("SIGHUP to the old process's exit: %.2f s; no refused connection", replaced)
    finally:
        watching = False
        watcher.cancel()
        for client in dashboards:
            await client.stop()
        # The successor runs in the old process's group, which the stack's bookkeeping no
        # longer follows: stop it there, and start the stack's own web process again.
        await rolling.stop_groups([predecessor.pid], [stack.web_port])
        web.popen = None
        await asyncio.to_thread(stack.start_web)
