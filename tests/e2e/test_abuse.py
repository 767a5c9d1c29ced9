"""One hostile trader cannot slow the others: the most expensive valid client, at its
maximum allowed rate on every stream it may open, beside a normal dashboard.

The abuser holds the per-user maximum of streams and sends, at the per-connection frame
limit, the costliest frames there are: a subscribe of every symbol with a ``since`` from
another epoch (each answered by a full snapshot: quote and 200 candles), then an
unsubscribe, over and over. Its reads are charged to its read budget, so most of those
subscribes are refused cheaply. The normal trader's p99 tick latency (arrival minus the
tick's own timestamp) with the abuser running must stay within 2x of its p99 without.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.e2e import bloater
from tests.e2e.stack import ADMIN, ROOT, TRADER, Stack

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

WINDOW_SECONDS = 12.0
STREAMS = 20  # TICKER_MAX_CONNECTIONS_PER_USER
FRAMES_PER_SECOND = 20  # TICKER_MAX_CLIENT_RATE


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def report(what: str, alone: list[list[float]], beside: list[float], answers: dict[str, int]) -> tuple[float, float]:
    """Log the victim's p99 alone (each run) and beside the attack; returns (the larger alone, beside)."""
    base, attacked = max(p99(run) for run in alone), p99(beside)
    logger.info(
        "%s: victim p99 alone %s ms, beside %.0f ms (%d ticks), ratio %.2f; attacker got %s",
        what,
        "/".join(f"{p99(run):.0f}" for run in alone),
        attacked,
        len(beside),
        attacked / base,
        answers,
    )
    return base, attacked


async def watch(url: str, headers: dict[str, str], symbols: list[str], seconds: float) -> list[float]:
    """Tick latencies (ms) a normal dashboard sees over ``seconds``, after its snapshots."""
    latencies: list[float] = []
    async with connect(url, additional_headers=headers, max_size=2**22) as ws:
        await ws.send(json.dumps({"op": "subscribe", "id": 1, "symbols": symbols}))
        async with asyncio.timeout(10):
            while json.loads(await ws.recv())["type"] != "ack":
                pass
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), left))
            except TimeoutError:
                break
            if frame["type"] == "ticks" and not frame.get("recovered"):
                now = time.time_ns() / 1e6
                latencies += [now - tick["ts"] for tick in frame["data"]]
    return latencies


async def abuse(url: str, headers: dict[str, str], symbols: list[str], stop: asyncio.Event) -> dict[str, int]:
    """One abusive stream at the frame limit, reconnecting if closed; returns what the server answered."""
    answers: dict[str, int] = {}
    since = {s: {"epoch": "0", "seq": 1} for s in symbols}

    def count(key: str) -> None:
        answers[key] = answers.get(key, 0) + 1

    while not stop.is_set():
        try:
            async with connect(url, additional_headers=headers, max_size=2**24) as ws:

                async def drain(ws=ws) -> None:
                    async for text in ws:
                        frame = json.loads(text)
                        count(frame.get("code", frame["type"]))

                reader = asyncio.create_task(drain())
                op_id = 0
                try:
                    while not stop.is_set():
                        op_id += 1
                        if op_id % 2:
                            frame = {"op": "subscribe", "id": op_id, "symbols": symbols, "interval": "5s"}
                            frame["since"] = since
                        else:
                            frame = {"op": "unsubscribe", "id": op_id, "symbols": symbols}
                        await ws.send(json.dumps(frame))
                        # Pacing at the documented limit (this is the load, not a synchronisation).
                        await asyncio.sleep(1 / FRAMES_PER_SECOND)
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await reader
        except ConnectionClosed as closed:
            # Closed for flooding when frames bunch up: a real abuser comes straight back.
            count(f"closed {closed.rcvd.code if closed.rcvd else None}")
        except (InvalidHandshake, OSError):
            # Coming straight back after every 4429 is a handshake flood of its own; a
            # handshake the server drops under it is one more refusal, and it tries again.
            count("handshake failed")
    return answers


async def test_the_most_expensive_client_does_not_slow_another(stack_logs: Stack) -> None:
    url = f"{stack_logs.ws_url}/ws/stream/"
    symbols = [s["symbol"] for s in json.loads(stack_logs.session().get("/api/symbols/"))["symbols"]]
    victim = {"Cookie": stack_logs.login(*TRADER), "Origin": stack_logs.base_url}
    attacker = {"Cookie": stack_logs.login(*ADMIN), "Origin": stack_logs.base_url}

    alone = await watch(url, victim, symbols, WINDOW_SECONDS)
    stop = asyncio.Event()
    abusers = [asyncio.create_task(abuse(url, attacker, symbols, stop)) for _ in range(STREAMS)]
    try:
        await asyncio.sleep(1.0)  # let the abuse reach its steady state before measuring
        beside = await watch(url, victim, symbols, WINDOW_SECONDS)
    finally:
        stop.set()
        answers = await asyncio.gather(*abusers, return_exceptions=True)
    totals: dict[str, int] = {}
    for answer in answers:
        assert isinstance(answer, dict), f"an abusive stream was dropped: {answer!r}"
        for key, count in answer.items():
            totals[key] = totals.get(key, 0) + count
    base, abused = report("most expensive client", [alone], beside, totals)
    assert totals.get("rate_limited", 0) > 0, "the abuser hit its read budget"
    assert totals.get("snapshot", 0) > 0, "and was served within it"
    assert abused <= 2 * base, f"p99 {abused:.0f} ms beside the abuser vs {base:.0f} ms alone"


BLOATER = ("e2e-bloater", "e2e-bloater-pass-1")


async def test_a_since_bloat_attacker_leaves_another_trader_within_1_2x(stack_logs: Stack) -> None:
    url = f"{stack_logs.ws_url}/ws/stream/"
    symbols = [s["symbol"] for s in json.loads(stack_logs.session().get("/api/symbols/"))["symbols"]]
    victim = {"Cookie": stack_logs.login(*TRADER), "Origin": stack_logs.base_url}
    # An account of its own: the connects of the test above must not count against it.
    env = {
        **os.environ,
        "BLOAT_COOKIE": stack_logs.login(*stack_logs.ensure_user(*BLOATER)),
        "BLOAT_ORIGIN": stack_logs.base_url,
    }
    assert len(bloater.since_text()) > 55_000

    before = await watch(url, victim, symbols, WINDOW_SECONDS)
    attacker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.e2e.bloater",
        url,
        str(WINDOW_SECONDS + 1),
        *symbols,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert attacker.stdout is not None
    try:
        # Its 20 streams are open and subscribed (a connect costs what it costs any trader):
        # the bloated frames start now.
        ready = await asyncio.wait_for(attacker.stdout.readline(), 30)
        assert ready == b"ready\n"
        beside = await watch(url, victim, symbols, WINDOW_SECONDS)
    finally:
        out, _ = await asyncio.wait_for(attacker.communicate(), 60)
    totals = json.loads(out.decode().strip().splitlines()[-1])
    after = await watch(url, victim, symbols, WINDOW_SECONDS)
    # The victim's own p99 alone, before and after: the larger is what the machine gives it.
    base, attacked = report("since bloat", [before, after], beside, totals)
    assert totals.get("bad_frame", 0) > 0, "every bloated since is refused as a bad frame"
    assert totals.get("closed 4400", 0) > 0, "and a stream that keeps sending them is closed"
    assert attacked <= 1.2 * base, f"p99 {attacked:.0f} ms beside the attacker vs {base:.0f} ms alone"
