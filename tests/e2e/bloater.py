"""The since-bloat attacker of ``test_abuse.py``, run in a process of its own.

In the test's process its client work (sending ~60 KB frames at the frame limit on 20
streams) would share the event loop with the victim it is measured against, and slow the
victim's own client rather than the server. ``python -m tests.e2e.bloater URL SECONDS``
with the attacker's cookie and origin in ``BLOAT_COOKIE`` and ``BLOAT_ORIGIN`` runs it and
prints what the server answered, as JSON, on its last line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

BLOAT_SYMBOLS = 2000
STREAMS = 20  # TICKER_MAX_CONNECTIONS_PER_USER
FRAMES_PER_SECOND = 19  # just under the per-connection frame limit (20)


def since_text() -> str:
    """A ``since`` naming 2,000 symbols that do not exist: ~59 KB, under the 64 KiB frame limit."""
    return json.dumps({f"X{i}": {"epoch": "e", "seq": 1} for i in range(BLOAT_SYMBOLS)}, separators=(",", ":"))


async def stream(
    url: str, headers: dict[str, str], symbol: str, go: asyncio.Event, stop: asyncio.Event, answers: dict[str, int]
) -> None:
    """One stream: subscribed to one real symbol, then (once ``go`` is set) re-subscribing it
    with the bloated ``since`` at the frame limit; reconnecting whenever it is closed."""
    since = since_text()

    def count(key: str) -> None:
        answers[key] = answers.get(key, 0) + 1

    while not stop.is_set():
        try:
            async with connect(url, additional_headers=headers, max_size=2**24) as ws:
                subscribed = asyncio.Event()

                async def drain(ws=ws, subscribed=subscribed) -> None:
                    async for text in ws:
                        frame = json.loads(text)
                        count(frame.get("code", frame["type"]))
                        if frame["type"] == "snapshot":
                            subscribed.set()

                reader = asyncio.create_task(drain())
                try:
                    await ws.send(json.dumps({"op": "subscribe", "id": 0, "symbols": [symbol]}))
                    await subscribed.wait()
                    await go.wait()
                    op_id = 0
                    while not stop.is_set():
                        op_id += 1
                        await ws.send(f'{{"op":"subscribe","id":{op_id},"symbols":["{symbol}"],"since":{since}}}')
                        await asyncio.sleep(1 / FRAMES_PER_SECOND)  # the load's pacing
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await reader
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            count(f"closed {code}")
            if code == 4429:
                # Over its connect rate: it comes back a second later, as told (a reconnect
                # flood is bounded per address and by the load balancer, not here).
                await asyncio.sleep(1.0)
        except (InvalidHandshake, OSError):
            count("handshake failed")


async def attack(url: str, seconds: float, symbols: list[str]) -> dict[str, int]:
    """Open the streams, say ``ready`` once all are subscribed, then attack for ``seconds``."""
    headers = {"Cookie": os.environ["BLOAT_COOKIE"], "Origin": os.environ["BLOAT_ORIGIN"]}
    go, stop = asyncio.Event(), asyncio.Event()
    answers: dict[str, int] = {}
    targets = [symbols[i % len(symbols)] for i in range(STREAMS)]
    tasks = [asyncio.create_task(stream(url, headers, symbol, go, stop, answers)) for symbol in targets]
    while answers.get("snapshot", 0) < STREAMS:
        await asyncio.sleep(0.05)  # a poll of this process's own counter, not of the server
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    go.set()
    await asyncio.sleep(seconds)  # how long the attack lasts
    stop.set()
    await asyncio.gather(*tasks)
    return answers


if __name__ == "__main__":
    url, seconds, *names = sys.argv[1:]
    sys.stdout.write(json.dumps(asyncio.run(attack(url, float(seconds), names))) + "\n")
