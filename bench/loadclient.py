"""The load client: many WebSocket dashboards in one asyncio process, measuring what they receive.

Run by the orchestrator as ``python -m bench.loadclient SPEC.json``; it talks to it with
JSON lines. It connects its clients in bounded-concurrency waves, then prints
``{"event": "connected", ...}``. On the ``measure T0 T1`` command (wall-clock seconds)
it counts what arrives between T0 and T1 (or until a ``stop`` command comes first) and
prints ``{"event": "result", ...}``; on ``close`` (or stdin closing, or its lifetime
bound) it closes every socket and exits.

What it measures, per tick received: the sequence gap against the last ``seq`` of that
symbol on that connection (starting from the snapshot's ``seq``: ticks lost), and
``now - ts`` in a 1 ms histogram (tick-to-client latency). Frames are parsed with orjson.

In ``depth`` mode each dashboard also subscribes the ``depth`` and ``trades`` channels of
one symbol (``depth_symbols[i % len]`` for dashboard ``i``): every ``depth`` frame's
``U``/``u`` and every trade's ``id`` is checked against the one before (``bench.chains``:
gaps, duplicates, server resnapshots), and their ``ts`` go to two more histograms, one
sample per ``depth`` frame and one per trade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import resource
import sys
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.chains import ANCHORED, DUPLICATE, GAP, Chains

logger = logging.getLogger("bench.loadclient")

# Latency histogram: 1 ms buckets up to this bound (later ticks land in the last bucket).
HIST_MS = 120_000


@dataclass
class ClientSpec:
    """What one load-client process does (written as JSON by the orchestrator)."""

    urls: list[str]
    # "stream" (subscribe to symbols), "depth" (stream, plus depth and trades of one symbol),
    # "sync" (single-symbol URL), "idle" (hello only)
    mode: str
    clients: int
    symbols: list[str] = field(default_factory=list)
    # Depth mode: dashboard i follows the book and the tape of depth_symbols[i % len], depth_levels deep.
    depth_symbols: list[str] = field(default_factory=list)
    depth_levels: int = 20
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[str] = field(default_factory=list)  # client i sends cookies[i % len] as its Cookie
    origin: str | None = None
    first_index: int = 0
    concurrency: int = 25
    open_timeout: float = 10.0
    ready_timeout: float = 20.0
    connect_budget: float = 60.0
    max_seconds: float = 900.0
    # Storms: no retry of a failed handshake; connect from this wall-clock instant (all
    # processes at once); after a close, reconnect and resume (``since``) as the browser does.
    retry: bool = True
    start_at: float = 0.0
    resume: bool = False
    backoff_base: float = 0.5
    backoff_max: float = 15.0

    @classmethod
    def load(cls, path: Path) -> ClientSpec:
        return cls(**orjson.loads(path.read_bytes()))


@dataclass
class Stats:
    """Counters of one process, for the measurement window unless named otherwise."""

    measuring: bool = False
    frames: int = 0
    tick_frames: int = 0
    bytes: int = 0
    ticks: int = 0
    lost: int = 0
    duplicates: int = 0
    unanchored: int = 0
    max_latency: int = 0
    errors: int = 0
    hist: array = field(default_factory=lambda: array("q", bytes(8 * HIST_MS)))
    frame_types: dict[str, int] = field(default_factory=dict)
    closed_codes: dict[str, int] = field(default_factory=dict)
    ticks_total: int = 0
    lost_total: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    # After a reconnect: symbols resumed with their missed ticks, symbols sent a snapshot.
    resumed: int = 0
    resnapshots: int = 0
    # Depth mode (window counts, unless ``_total``): depth frames and their chain, trades and theirs.
    depth_frames: int = 0
    depth_gaps: int = 0
    depth_duplicates: int = 0
    depth_unanchored: int = 0
    depth_resnapshots: int = 0
    depth_hist: array = field(default_factory=lambda: array("q", bytes(8 * HIST_MS)))
    depth_max_latency: int = 0
    trade_frames: int = 0
    trades: int = 0
    trade_gaps: int = 0
    trade_duplicates: int = 0
    trade_hist: array = field(default_factory=lambda: array("q", bytes(8 * HIST_MS)))
    trade_max_latency: int = 0
    depth_gaps_total: int = 0
    depth_resnapshots_total: int = 0
    trade_gaps_total: int = 0


class Dashboard:
    """One connection: its per-symbol last ``seq`` and the reader loop."""

    __slots__ = (
        "chains",
        "epochs",
        "index",
        "last",
        "ready",
        "ready_at",
        "reconnects",
        "resuming",
        "stats",
        "want",
        "ws",
    )

    def __init__(self, index: int, stats: Stats, want: int) -> None:
        self.index = index
        self.stats = stats
        self.last: dict[str, int] = {}
        self.epochs: dict[str, str] = {}
        self.want = want  # snapshots still expected before the connection counts as ready
        self.ready = asyncio.Event()
        self.ready_at = 0.0  # wall clock
        self.ws: ClientConnection | None = None
        self.reconnects = 0
        self.resuming = False
        self.chains = Chains()

    def rearm(self, want: int) -> None:
        """A new socket: ready again once every symbol is resumed or re-snapshotted."""
        self.want = want
        self.ready = asyncio.Event()
        self.resuming = True

    def got_symbol(self) -> None:
        self.want -= 1
        if self.want <= 0 and not self.ready.is_set():
            self.ready_at = time.time()
            self.ready.set()

    def since(self) -> dict[str, dict[str, Any]]:
        return {s: {"epoch": self.epochs[s], "seq": seq} for s, seq in self.last.items() if s in self.epochs}

    def on_frame(self, raw: str | bytes) -> None:
        now = time.time() * 1000.0
        stats = self.stats
        frame = orjson.loads(raw)
        kind = frame.get("type")
        measuring = stats.measuring
        if kind == "ticks":
            data = frame["data"]
            if frame.get("recovered") and self.resuming:
                stats.resumed += 1
                self.got_symbol()
            last = self.last
            lost = 0
            counted = 0
            if measuring:
                hist = stats.hist
                top = HIST_MS - 1
                max_lat = stats.max_latency
                for tick in data:
                    symbol = tick["symbol"]
                    seq = tick["seq"]
                    prev = last.get(symbol)
                    if prev is None:
                        stats.unanchored += 1
                        continue
                    if seq <= prev:
                        stats.duplicates += 1
                        continue
                    if seq != prev + 1:
                        lost += seq - prev - 1
                    last[symbol] = seq
                    counted += 1
                    lat = int(now - tick["ts"])
                    if lat < 0:
                        lat = 0
                    elif lat > top:
                        lat = top
                    hist[lat] += 1
                    if lat > max_lat:
                        max_lat = lat
                stats.max_latency = max_lat
                stats.ticks += counted
                stats.lost += lost
                stats.frames += 1
                stats.tick_frames += 1
                stats.bytes += len(raw)
            else:
                for tick in data:
                    symbol = tick["symbol"]
                    seq = tick["seq"]
                    prev = last.get(symbol)
                    if prev is None or seq <= prev:
                        continue
                    if seq != prev + 1:
                        lost += seq - prev - 1
                    last[symbol] = seq
                    counted += 1
            stats.ticks_total += counted
            stats.lost_total += lost
            return
        if kind == "depth":
            self.on_depth(frame, now, len(raw), measuring)
            return
        if kind == "trades":
            self.on_trades(frame, now, len(raw), measuring)
            return
        if measuring:
            stats.frames += 1
            stats.bytes += len(raw)
            stats.frame_types[kind] = stats.frame_types.get(kind, 0) + 1
        if kind == "snapshot":
            self.last[frame["symbol"]] = frame["seq"] or 0
            if frame.get("epoch"):
                self.epochs[frame["symbol"]] = frame["epoch"]
            if self.resuming:
                stats.resnapshots += 1
            self.got_symbol()
        elif kind == "depth_snapshot":
            if self.chains.snapshot(frame["symbol"], frame["epoch"], frame["u"]):
                stats.depth_resnapshots_total += 1
                if measuring:
                    stats.depth_resnapshots += 1
            else:
                self.got_symbol()
        elif kind == "error":
            stats.errors += 1
            code = str(frame.get("code"))
            stats.error_codes[code] = stats.error_codes.get(code, 0) + 1
            logger.warning("client %d got an error frame: %s", self.index, raw[:200])

    def on_depth(self, frame: dict[str, Any], now: float, size: int, measuring: bool) -> None:
        stats = self.stats
        verdict = self.chains.depth(frame["symbol"], frame["epoch"], frame["U"], frame["u"])
        if verdict == GAP:
            stats.depth_gaps_total += 1
        if not measuring:
            return
        stats.frames += 1
        stats.bytes += size
        stats.depth_frames += 1
        if verdict == GAP:
            stats.depth_gaps += 1
        elif verdict == DUPLICATE:
            stats.depth_duplicates += 1
        elif verdict == ANCHORED:
            stats.depth_unanchored += 1
        lat = min(max(int(now - frame["ts"]), 0), HIST_MS - 1)
        stats.depth_hist[lat] += 1
        if lat > stats.depth_max_latency:
            stats.depth_max_latency = lat

    def on_trades(self, frame: dict[str, Any], now: float, size: int, measuring: bool) -> None:
        stats = self.stats
        check = self.chains.trade
        gaps = duplicates = 0
        data = frame["data"]
        for trade in data:
            verdict = check(trade["symbol"], trade["epoch"], trade["id"])
            if verdict == GAP:
                gaps += 1
            elif verdict == DUPLICATE:
                duplicates += 1
        stats.trade_gaps_total += gaps
        if not measuring:
            return
        stats.frames += 1
        stats.bytes += size
        stats.trade_frames += 1
        stats.trades += len(data) - duplicates
        stats.trade_gaps += gaps
        stats.trade_duplicates += duplicates
        hist = stats.trade_hist
        top = HIST_MS - 1
        max_lat = stats.trade_max_latency
        for trade in data:
            lat = int(now - trade["ts"])
            if lat < 0:
                lat = 0
            elif lat > top:
                lat = top
            hist[lat] += 1
            if lat > max_lat:
                max_lat = lat
        stats.trade_max_latency = max_lat


class LoadClient:
    """Connects ``spec.clients`` dashboards and reads from all of them until told to close."""

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self.stats = Stats()
        self.dashboards: list[Dashboard] = []
        self.failures: dict[str, int] = {}
        self.connected = 0
        self.retries = 0
        self.gave_up = 0
        self.readers: set[asyncio.Task[None]] = set()
        self.commands: asyncio.Queue[str] = asyncio.Queue()
        self.window_stop = asyncio.Event()
        self.cpu0 = self.cpu1 = 0.0
        self.closing = False
        self.down = 0

    def emit(self, event: str, **payload: Any) -> None:
        sys.stdout.write(orjson.dumps({"event": event, **payload}).decode() + "\n")
        sys.stdout.flush()

    async def open_one(self, index: int, sem: asyncio.Semaphore, deadline: float) -> None:
        """Connect one dashboard, retrying with backoff and jitter (as the browser client does)."""
        delay = 0.25
        while True:
            async with sem:
                board = await self.attempt(index)
            if board is not None:
                self.dashboards.append(board)
                self.connected += 1
                return
            if not self.spec.retry:
                self.gave_up += 1
                return
            if time.monotonic() + delay >= deadline:
                self.gave_up += 1
                return
            self.retries += 1
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 4.0)

    async def attempt(self, index: int, board: Dashboard | None = None) -> Dashboard | None:
        """One handshake: open, hello, subscribe, every snapshot; None (reason recorded) on failure.

        With ``board`` (a reconnect), it subscribes with ``since`` its last positions.
        """
        spec = self.spec
        url = spec.urls[(spec.first_index + index) % len(spec.urls)]
        want = {"stream": len(spec.symbols), "depth": len(spec.symbols) + 1, "sync": 1}.get(spec.mode, 0)
        since: dict[str, Any] = {}
        if board is None:
            board = Dashboard(spec.first_index + index, self.stats, want)
        else:
            since = board.since()
            board.rearm(want)
        headers = dict(spec.headers)
        if spec.cookies:
            headers["Cookie"] = spec.cookies[(spec.first_index + index) % len(spec.cookies)]
        try:
            ws = await connect(
                url,
                additional_headers=headers,
                origin=("http://" + urlsplit(url).netloc) if spec.origin == "same" else spec.origin,  # type: ignore[arg-type]
                open_timeout=spec.open_timeout,
                ping_interval=None,
                close_timeout=2,
                compression=None,
                max_size=2**24,
            )
        except Exception as exc:
            self._fail(type(exc).__name__)
            return None
        board.ws = ws
        reader: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(spec.ready_timeout):
                hello = orjson.loads(await ws.recv())
                if hello.get("type") != "hello":
                    raise RuntimeError(f"expected hello, got {hello.get('type')}")
                if spec.mode in ("stream", "depth"):
                    op: dict[str, Any] = {"op": "subscribe", "id": 1, "symbols": spec.symbols}
                    if since:
                        op["since"] = since
                    await ws.send(orjson.dumps(op).decode())
                if spec.mode == "depth":
                    book = spec.depth_symbols[board.index % len(spec.depth_symbols)]
                    op = {
                        "op": "subscribe",
                        "id": 2,
                        "symbols": [book],
                        "channels": ["depth", "trades"],
                        "depth_levels": spec.depth_levels,
                    }
                    await ws.send(orjson.dumps(op).decode())
                reader = asyncio.get_running_loop().create_task(self.read(board))
                if want:
                    await board.ready.wait()
        except Exception as exc:
            code = f" {ws.close_code}" if ws.close_code else ""
            self._fail(f"ready {type(exc).__name__}{code}")
            if reader is not None:
                reader.cancel()
            with contextlib.suppress(Exception):
                await ws.close()
            return None
        self.readers.add(reader)
        reader.add_done_callback(self.readers.discard)
        return board

    def _fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    async def read(self, board: Dashboard) -> None:
        assert board.ws is not None
        try:
            async for raw in board.ws:
                board.on_frame(raw)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("client %d: reader failed", board.index)
        finally:
            code = board.ws.close_code
            if self.stats.measuring or code not in (None, 1000):
                key = str(code)
                self.stats.closed_codes[key] = self.stats.closed_codes.get(key, 0) + 1
            # Only a live socket's loss: a handshake failing on its way is retried by its caller.
            if self.spec.resume and not self.closing and board.ready.is_set():
                task = asyncio.get_running_loop().create_task(self.reconnect(board))
                self.readers.add(task)
                task.add_done_callback(self.readers.discard)

    async def reconnect(self, board: Dashboard) -> None:
        """The browser's reconnect: backoff with equal jitter, then resume with ``since``."""
        board.reconnects += 1
        self.down += 1
        attempt = 0
        while not self.closing:
            attempt += 1
            ceiling = min(self.spec.backoff_max, self.spec.backoff_base * 2 ** (attempt - 1))
            await asyncio.sleep(ceiling / 2 + random.random() * ceiling / 2)
            if await self.attempt(board.index - self.spec.first_index, board) is not None:
                self.down -= 1
                return
            self.retries += 1

    async def await_back(self, since: float, deadline: float) -> None:
        """Wait until every dashboard that lost its socket is live again; report the time."""
        while time.time() < deadline:
            if self.down == 0 and all(b.reconnects and b.ready.is_set() for b in self.dashboards):
                break
            await asyncio.sleep(0.1)  # polled: a report, not a synchronisation
        boards = self.dashboards
        back = [b for b in boards if b.reconnects and b.ready.is_set() and b.ready_at >= since]
        self.emit(
            "back",
            dashboards=len(boards),
            lost_socket=sum(1 for b in boards if b.reconnects),
            back=len(back),
            last_back_s=round(max((b.ready_at for b in back), default=since) - since, 2),
            resumed=self.stats.resumed,
            resnapshots=self.stats.resnapshots,
            retries=self.retries,
            failures=self.failures,
            error_codes=self.stats.error_codes,
        )

    async def connect_all(self) -> None:
        spec = self.spec
        sem = asyncio.Semaphore(spec.concurrency)
        if spec.start_at:
            await asyncio.sleep(max(0.0, spec.start_at - time.time()))  # every process starts at once
        started_wall = time.time()
        started = time.monotonic()
        deadline = started + spec.connect_budget
        tasks = [asyncio.create_task(self.open_one(i, sem, deadline)) for i in range(spec.clients)]
        _, pending = await asyncio.wait(tasks, timeout=spec.connect_budget + 1)
        for task in pending:
            task.cancel()
        if pending:
            self._fail("connect budget exceeded")
            await asyncio.wait(pending, timeout=5)
        self.emit(
            "connected",
            connected=self.connected,
            failed=spec.clients - self.connected,
            failures=self.failures,
            retries=self.retries,
            seconds=round(time.monotonic() - started, 2),
            started_at=started_wall,
            last_ready_at=max((b.ready_at for b in self.dashboards), default=0.0),
            error_codes=self.stats.error_codes,
        )

    def start_window(self) -> None:
        self.cpu0 = time.process_time()
        self.stats.measuring = True

    def end_window(self) -> None:
        self.stats.measuring = False
        self.cpu1 = time.process_time()

    async def measure(self, t0: float, t1: float) -> None:
        loop = asyncio.get_running_loop()
        # Schedule the window edges on the loop's clock from wall-clock instants.
        opening = loop.call_at(loop.time() + max(t0 - time.time(), 0), self.start_window)
        # Ends at T1, or earlier on ``stop`` (a storm's window ends when its last dashboard is live).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.window_stop.wait(), max(t1 - time.time(), 0))
        opening.cancel()  # a stop before T0: the window never opens
        if not self.stats.measuring:
            self.cpu0 = time.process_time()
        t1 = max(t0, min(t1, time.time()))
        self.end_window()
        stats = self.stats
        hist = {str(i): n for i, n in enumerate(stats.hist) if n}
        alive = sum(1 for board in self.dashboards if board.ws is not None and board.ws.close_code is None)
        self.emit(
            "result",
            seconds=t1 - t0,
            clients=self.connected,
            alive=alive,
            frames=stats.frames,
            tick_frames=stats.tick_frames,
            bytes=stats.bytes,
            ticks=stats.ticks,
            lost=stats.lost,
            duplicates=stats.duplicates,
            unanchored=stats.unanchored,
            max_latency_ms=stats.max_latency,
            errors=stats.errors,
            frame_types=stats.frame_types,
            closed_codes=stats.closed_codes,
            latency_hist=hist,
            cpu_s=round(self.cpu1 - self.cpu0, 3),
            ticks_total=stats.ticks_total,
            lost_total=stats.lost_total,
            **self.book_result(),
        )

    def book_result(self) -> dict[str, Any]:
        """The depth and trades figures of the window (depth mode only)."""
        if self.spec.mode != "depth":
            return {}
        stats = self.stats
        return {
            "depth_frames": stats.depth_frames,
            "depth_gaps": stats.depth_gaps,
            "depth_duplicates": stats.depth_duplicates,
            "depth_unanchored": stats.depth_unanchored,
            "depth_resnapshots": stats.depth_resnapshots,
            "depth_max_latency_ms": stats.depth_max_latency,
            "depth_latency_hist": {str(i): n for i, n in enumerate(stats.depth_hist) if n},
            "trade_frames": stats.trade_frames,
            "trades": stats.trades,
            "trade_gaps": stats.trade_gaps,
            "trade_duplicates": stats.trade_duplicates,
            "trade_max_latency_ms": stats.trade_max_latency,
            "trade_latency_hist": {str(i): n for i, n in enumerate(stats.trade_hist) if n},
            "depth_gaps_total": stats.depth_gaps_total,
            "depth_resnapshots_total": stats.depth_resnapshots_total,
            "trade_gaps_total": stats.trade_gaps_total,
        }

    async def close_all(self) -> None:
        self.closing = True

        async def close(board: Dashboard) -> None:
            if board.ws is not None:
                with contextlib.suppress(Exception):
                    await board.ws.close()

        sem = asyncio.Semaphore(200)

        async def bounded(board: Dashboard) -> None:
            async with sem:
                await close(board)

        tasks = [asyncio.create_task(bounded(b)) for b in self.dashboards]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        for task in list(self.readers):
            task.cancel()

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._stdin_reader, args=(loop,), daemon=True).start()
        deadline = time.monotonic() + self.spec.max_seconds
        window: asyncio.Task[None] | None = None
        try:
            await self.connect_all()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logger.warning("lifetime bound of %.0f s reached: closing", self.spec.max_seconds)
                    break
                try:
                    command = await asyncio.wait_for(self.commands.get(), timeout=remaining)
                except TimeoutError:
                    continue
                parts = command.split()
                if parts and parts[0] == "stop":
                    self.window_stop.set()
                    continue
                if window is not None:
                    await window  # commands apply in order: a window ends before the next one
                    window = None
                if not parts or parts[0] == "close":
                    break
                if parts[0] == "measure":
                    self.window_stop.clear()  # before the task starts: a stop right after it counts
                    window = asyncio.create_task(self.measure(float(parts[1]), float(parts[2])))
                elif parts[0] == "await-back":
                    await self.await_back(float(parts[1]), float(parts[2]))
        finally:
            if window is not None and not window.done():
                window.cancel()
            await self.close_all()
            self.emit("closed")

    def _stdin_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(self.commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(self.commands.put_nowait, "close")


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m bench.loadclient SPEC.json``."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s loadclient %(process)d %(message)s",
        stream=sys.stderr,
    )
    spec = ClientSpec.load(Path(args[0]))
    limit = raise_nofile()
    if limit < spec.clients + 64:
        logger.warning("open-file limit %d is below %d clients", limit, spec.clients)
    asyncio.run(LoadClient(spec).main())
    return 0


if __name__ == "__main__":
    sys.exit(main())
