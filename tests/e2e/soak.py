"""`make soak`: hundreds of dashboards on the real stack for a bounded time, flat or not.

Every minute it prints one line: ticks received, ticks lost (by ``seq``, must be 0), the
p99 tick-to-client latency of that minute and the resident memory of every server
process. Latencies go into fixed-size 1 ms histograms (as ``make bench`` does), one per
minute and client process, reset each minute: the soak's own memory and CPU do not grow
with its length, so a slowdown it reports is the server's.

The CPU of each server process, of the clients and of everything else on the machine
(other users) is printed per minute too: a p99 that moves with "other" is not the server's.

It exits non-zero when a tick was lost, a process died, the last minute's p99 is above
``SOAK_P99_RATIO`` (1.2) times the second minute's (the first has the connect burst), or
a process's memory has not levelled off: over the second half of the run it grew by more
than ``SOAK_RSS_GROWTH_MIB`` (8 MiB) or 3 %, whichever is larger. ``SOAK_MINUTES``
(default 10), ``SOAK_CLIENTS`` (default 500) and ``SOAK_CLIENT_PROCS`` (default 2: the
dashboards' parsing is spread over processes so the client is not the bottleneck) size it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import random
import resource
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

import orjson
import psutil
from websockets.asyncio.client import connect

from tests.e2e.lifecycle import started
from tests.e2e.stack import Stack

logger = logging.getLogger("soak")
SYMBOLS = [f"F{i:02d}" for i in range(50)]
HIST_MS = 60_000  # 1 ms buckets; a later tick lands in the last one


class Minute:
    """What one client process received in one minute: counters and a fixed-size histogram."""

    __slots__ = ("hist", "lost", "ticks")

    def __init__(self) -> None:
        self.ticks = 0
        self.lost = 0
        self.hist = array("q", bytes(8 * HIST_MS))

    def summary(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "lost": self.lost, "hist": {i: n for i, n in enumerate(self.hist) if n}}


class Clients:
    """The dashboards of one client process, all counting into the current ``Minute``."""

    def __init__(self) -> None:
        self.minute = Minute()
        self.connected = 0
        self.reconnects = 0

    async def dashboard(self, url: str, headers: dict[str, str], stop: asyncio.Event) -> None:
        """One dashboard; a failed handshake or a lost socket is retried as the browser does."""
        attempt = 0
        live = False
        while not stop.is_set():
            positions: dict[str, int] = {}  # a new socket starts from its snapshots
            try:
                async with connect(url, additional_headers=headers, max_size=2**22) as ws:
                    await ws.send(orjson.dumps({"op": "subscribe", "id": 1, "symbols": SYMBOLS}).decode())
                    attempt = 0
                    if not live:
                        live = True
                        self.connected += 1
                    while not stop.is_set():
                        try:
                            text = await asyncio.wait_for(ws.recv(), 1.0)
                        except TimeoutError:
                            continue
                        self.on_frame(orjson.loads(text), positions)
                    return
            except Exception as exc:
                self.reconnects += 1
                attempt += 1
                logger.debug("a dashboard reconnects: %r", exc)
            ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
            await asyncio.sleep(ceiling / 2 + random.random() * ceiling / 2)  # backoff with equal jitter

    def on_frame(self, frame: dict[str, Any], positions: dict[str, int]) -> None:
        kind = frame["type"]
        if kind == "snapshot":
            positions[frame["symbol"]] = frame["seq"]
        elif kind == "ticks":
            now_ms = time.time() * 1000.0
            minute = self.minute
            hist = minute.hist
            top = HIST_MS - 1
            for tick in frame["data"]:
                last = positions.get(tick["symbol"])
                if last is not None and tick["seq"] > last + 1:
                    minute.lost += tick["seq"] - last - 1
                positions[tick["symbol"]] = tick["seq"]
                lat = int(now_ms - tick["ts"])
                hist[0 if lat < 0 else (top if lat > top else lat)] += 1
            minute.ticks += len(frame["data"])


def client_process(url: str, headers: dict[str, str], clients: int, minutes: int, out: Any) -> None:
    """One client process: connect ``clients`` dashboards, report every minute on ``out``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * clients + 256)), hard))

    async def run() -> None:
        state = Clients()
        stop = asyncio.Event()
        start = time.monotonic()
        tasks = []
        for i in range(clients):
            tasks.append(asyncio.create_task(state.dashboard(url, headers, stop)))
            if i % 25 == 24:
                await asyncio.sleep(0.2)  # connect in waves, as a real crowd would
        for n in range(1, minutes + 1):
            await asyncio.sleep(max(0.0, start + 60 * n - time.monotonic()))  # the minute's end
            done, state.minute = state.minute, Minute()
            out.put({"minute": n, "connected": state.connected, "reconnects": state.reconnects, **done.summary()})
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())


def percentile(hist: dict[int, int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return float("nan")
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= q * total:
            return float(value)
    return float(max(hist))


def memory(stack: Stack) -> dict[str, float]:
    found = {}
    for name, process in stack.processes.items():
        if process.popen is not None and process.alive():
            with contextlib.suppress(psutil.Error):
                found[name] = psutil.Process(process.popen.pid).memory_info().rss / 2**20
    return found


class CpuMeter:
    """CPU used per minute, in % of one core: each server process, the clients, and the rest of the machine."""

    def __init__(self, stack: Stack, workers: list[Any]) -> None:
        self.procs: dict[str, psutil.Process] = {}
        for name, process in stack.processes.items():
            if process.popen is not None:
                with contextlib.suppress(psutil.Error):
                    self.procs[name] = psutil.Process(process.popen.pid)
        for i, worker in enumerate(workers):
            with contextlib.suppress(psutil.Error):
                self.procs[f"client{i}"] = psutil.Process(worker.pid)
        self.last = self._sample()

    @staticmethod
    def _busy() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def _sample(self) -> tuple[float, float, dict[str, float]]:
        used = {}
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                used[name] = t.user + t.system + t.children_user + t.children_system
        return time.monotonic(), self._busy(), used

    def minute(self) -> dict[str, float]:
        now = self._sample()
        (t0, busy0, used0), (t1, busy1, used1) = self.last, now
        self.last = now
        span = max(t1 - t0, 1e-6)
        pct = {n: 100.0 * (used1[n] - used0.get(n, used1[n])) / span for n in used1}
        out = {n: v for n, v in pct.items() if not n.startswith("client")}
        out["clients"] = sum(v for n, v in pct.items() if n.startswith("client"))
        out["other"] = max(0.0, 100.0 * (busy1 - busy0) / span - sum(pct.values()))
        return out


def verdict(rows: list[dict[str, Any]], ratio: float, growth_mib: float) -> list[str]:
    """What makes the soak fail: lost ticks, p99 drifting up, memory still growing."""
    problems = []
    lost = sum(r["lost"] for r in rows)
    if lost:
        problems.append(f"{lost} ticks lost")
    if len(rows) >= 3:
        second, last = rows[1]["p99"], rows[-1]["p99"]
        if not last <= ratio * second:
            problems.append(f"last minute's p99 {last:.0f} ms > {ratio} x the second minute's {second:.0f} ms")
        mid = rows[len(rows) // 2]["rss"]
        for name, end in rows[-1]["rss"].items():
            start = mid.get(name)
            if start is not None and end - start > max(growth_mib, 0.03 * start):
                problems.append(f"{name} still growing: {start:.1f} -> {end:.1f} MiB over the second half")
    return problems


def soak(stack: Stack, clients: int, minutes: int, procs: int) -> int:
    headers = {"Cookie": stack.login(), "Origin": stack.base_url}
    url = f"{stack.ws_url}/ws/stream/"
    ratio = float(os.environ.get("SOAK_P99_RATIO", "1.2"))
    growth = float(os.environ.get("SOAK_RSS_GROWTH_MIB", "8"))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=client_process, args=(url, headers, n, minutes, out), daemon=True) for n in shares]
    logger.info(
        "soak: %d dashboards x %d symbols for %d min, %d client processes", clients, len(SYMBOLS), minutes, procs
    )
    logger.info("start   RSS MiB %s", "  ".join(f"{k} {v:.1f}" for k, v in memory(stack).items()))
    for worker in workers:
        worker.start()
    cpu = CpuMeter(stack, workers)
    rows: list[dict[str, Any]] = []
    try:
        for n in range(1, minutes + 1):
            parts = []
            deadline = time.monotonic() + 60 * (n + 1) + 30
            while len(parts) < procs:
                try:
                    parts.append(out.get(timeout=max(1.0, deadline - time.monotonic())))
                except queue.Empty:
                    logger.error("minute %d: %d client processes never reported", n, procs - len(parts))
                    return 1
            hist: dict[int, int] = {}
            for part in parts:
                for key, count in part["hist"].items():
                    hist[key] = hist.get(key, 0) + count
            row = {
                "minute": n,
                "ticks": sum(p["ticks"] for p in parts),
                "lost": sum(p["lost"] for p in parts),
                "connected": sum(p["connected"] for p in parts),
                "reconnects": sum(p["reconnects"] for p in parts),
                "p99": percentile(hist, 0.99),
                "rss": memory(stack),
                "cpu": cpu.minute(),
            }
            rows.append(row)
            logger.info(
                "minute %2d: %9d ticks, lost %d, p99 %5.0f ms, %d dashboards (%d reconnects so far);"
                " RSS MiB %s; CPU %% %s",
                n,
                row["ticks"],
                row["lost"],
                row["p99"],
                row["connected"],
                row["reconnects"],
                "  ".join(f"{k} {v:.1f}" for k, v in row["rss"].items()),
                "  ".join(f"{k} {v:.0f}" for k, v in row["cpu"].items()),
            )
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
    dead = [name for name, p in stack.processes.items() if not p.alive()]
    problems = verdict(rows, ratio, growth)
    if rows and rows[-1]["connected"] < clients:
        problems.append(f"only {rows[-1]['connected']} of {clients} dashboards ever connected")
    if dead:
        problems.append(f"processes exited: {dead}")
    logger.info("soak %s%s", "FAILED: " if problems else "passed", "; ".join(problems))
    return 1 if problems else 0


def main() -> int:
    # The report is this command's output: one log line per figure.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("tests.e2e").setLevel(logging.WARNING)
    minutes = int(os.environ.get("SOAK_MINUTES", "10"))
    clients = int(os.environ.get("SOAK_CLIENTS", "500"))
    procs = max(1, int(os.environ.get("SOAK_CLIENT_PROCS", "2")))
    # One tick per symbol every 250 ms: 200 ticks/s, the product's reference load.
    stack = Stack(Path(tempfile.mkdtemp(prefix="ticker-soak-")), fast_symbols=50, fast_interval_ms=250)
    stack.extra_env["TICKER_MAX_CONNECTIONS_PER_USER"] = str(clients + 10)
    stack.extra_env["TICKER_MAX_CONNECTS_PER_MINUTE"] = str(clients + 10)
    # One trader for every dashboard: its read budget must cover every subscribe.
    stack.extra_env["TICKER_READ_BURST"] = str(50 * (clients + 10))
    with started(stack):
        return soak(stack, clients, minutes, procs)


if __name__ == "__main__":
    sys.exit(main())
