"""`make soak`: a few hundred dashboards on the real stack for a bounded time.

Prints the memory of every server process at the start and the end, ticks lost (by
``seq``, must be 0) and the p99 tick-to-client latency of every minute, and exits non-zero
if a tick was lost or a process died. ``SOAK_MINUTES`` (default 10) and ``SOAK_CLIENTS``
(default 300) size it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psutil
from websockets.asyncio.client import connect

from tests.e2e.lifecycle import started
from tests.e2e.stack import Stack

logger = logging.getLogger("soak")
SYMBOLS = [f"F{i:02d}" for i in range(50)]


@dataclass
class Minute:
    """What all clients received in one minute."""

    latencies: list[float] = field(default_factory=list)
    lost: int = 0
    ticks: int = 0


async def dashboard(
    url: str, headers: dict[str, str], minutes: list[Minute], start: float, stop: asyncio.Event
) -> None:
    positions: dict[str, int] = {}
    async with connect(url, additional_headers=headers, max_size=2**22) as ws:
        await ws.send(orjson.dumps({"op": "subscribe", "id": 1, "symbols": SYMBOLS}).decode())
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                continue
            frame = orjson.loads(text)
            if frame["type"] == "snapshot":
                positions[frame["symbol"]] = frame["seq"]
            elif frame["type"] == "ticks":
                now = time.time()
                minute = minutes[min(int((time.monotonic() - start) // 60), len(minutes) - 1)]
                for tick in frame["data"]:
                    last = positions.get(tick["symbol"])
                    if last is not None and tick["seq"] > last + 1:
                        minute.lost += tick["seq"] - last - 1
                    positions[tick["symbol"]] = tick["seq"]
                    minute.latencies.append(now - tick["ts"] / 1000)
                    minute.ticks += 1


def memory(stack: Stack) -> dict[str, float]:
    found = {}
    for name, process in stack.processes.items():
        if process.popen is not None:
            found[name] = psutil.Process(process.popen.pid).memory_info().rss / 2**20
    return found


async def soak(stack: Stack, clients: int, minutes: int) -> int:
    headers = {"Cookie": stack.login(), "Origin": stack.base_url}
    url = f"{stack.ws_url}/ws/stream/"
    before = memory(stack)
    stop = asyncio.Event()
    per_minute = [Minute() for _ in range(minutes)]
    start = time.monotonic()
    tasks = []
    for i in range(clients):
        tasks.append(asyncio.create_task(dashboard(url, headers, per_minute, start, stop)))
        if i % 25 == 24:
            await asyncio.sleep(0.2)  # connect in waves, as a real crowd would
    await asyncio.sleep(minutes * 60 - (time.monotonic() - start))
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    after = memory(stack)
    logger.info("soak: %d dashboards x %d symbols for %d min", clients, len(SYMBOLS), minutes)
    for i, minute in enumerate(per_minute, start=1):
        p99 = statistics.quantiles(minute.latencies, n=100)[98] * 1000 if len(minute.latencies) > 100 else float("nan")
        logger.info("minute %2d: %9d ticks, lost %d, p99 %.0f ms", i, minute.ticks, minute.lost, p99)
    for name in before:
        logger.info("%-7s RSS %7.1f MiB -> %7.1f MiB", name, before[name], after.get(name, float("nan")))
    lost = sum(m.lost for m in per_minute)
    dead = [name for name, p in stack.processes.items() if not p.alive()]
    logger.info("lost %d ticks; processes exited: %s", lost, dead or "none")
    return 0 if lost == 0 and not dead else 1


def main() -> int:
    # The report is this command's output: one log line per figure.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("tests.e2e").setLevel(logging.WARNING)
    minutes = int(os.environ.get("SOAK_MINUTES", "10"))
    clients = int(os.environ.get("SOAK_CLIENTS", "300"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * clients + 256)), hard))
    # One tick per symbol every 250 ms: 200 ticks/s, the product's reference load.
    stack = Stack(Path(tempfile.mkdtemp(prefix="ticker-soak-")), fast_symbols=50, fast_interval_ms=250)
    stack.extra_env["TICKER_MAX_CONNECTIONS_PER_USER"] = str(clients + 10)
    stack.extra_env["TICKER_MAX_CONNECTS_PER_MINUTE"] = str(clients + 10)
    with started(stack):
        return asyncio.run(soak(stack, clients, minutes))


if __name__ == "__main__":
    sys.exit(main())
