"""The floor reference: a plain ``websockets`` server on one Redis pub/sub subscription. No Django.

``python -m bench.floor serve --port P --redis URL`` accepts dashboards speaking the
same protocol subset as Ticker (``hello``; ``subscribe`` answered by ``ack`` and one
``snapshot`` per symbol; then ``ticks`` frames; with ``channels`` ``depth`` and ``trades``
and ``depth_levels``, a ``depth_snapshot`` with the next window, then ``depth`` and
``trades`` frames). One task reads one Redis subscription; per producer window it builds
each distinct subscription set's ``ticks`` frame once, each (symbol, levels)'s ``depth``
frame once (``BookReplicas``, ``window_of`` and ``BookUpdate.frame``, as Ticker's web
processes do), each distinct trades set's ``trades`` frame once, and hands the
already-encoded bytes to ``websockets.broadcast``: per connection, ticks, then depth, then
trades, as Ticker.

``python -m bench.floor produce --redis URL --rate R`` ticks ``--symbols`` symbols
(``S00``...) at ``R`` ticks/s in total, each tick printed through the symbol's order
book (``workers.simulator`` and ``workers.order_book``, Ticker's own pure simulation:
same trades, same book changes, a keyframe of each book every second), and publishes
one message per 100 ms window carrying every symbol's ticks (encoded once), book
entries and trades (``dashboard.market.depth``'s wire forms). It also stores the last
``seq`` per symbol under ``floor:seq:<SYM>`` so the harness can measure its rate.

This is what the hardware can do with the same wire format and no framework: the
yardstick for Ticker's server CPU per frame.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from dashboard.market.depth import TRADES_PIECE, BookReplicas, book_entry, trades_frame, trades_piece, window_of
from workers.order_book import OrderBook
from workers.simulator import PriceProcess, SymbolSpec, next_window_ms, on_the_clock

logger = logging.getLogger("bench.floor")

CHANNEL = "floor:ticks"
SEQ_KEY = "floor:seq:{}"
# As Ticker's producer (workers/series.py): the whole book of each symbol this often.
KEYFRAME_EVERY_MS = 1000
DEFAULT_LEVELS = 20
MAX_LEVELS = 50


def symbol_names(count: int) -> list[str]:
    """The benchmark's symbol codes: S00, S01, ..."""
    width = max(2, len(str(count - 1)))
    return [f"S{i:0{width}d}" for i in range(count)]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class FloorServer:
    """Subscribed sockets grouped by subscription set; one frame built per set and window."""

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = symbols
        self.catalog = [
            {"symbol": s, "name": s, "asset_class": "equity", "precision": 2, "status": "trading"} for s in symbols
        ]
        self.last_seq: dict[str, int] = dict.fromkeys(symbols, 0)
        self.groups: dict[tuple[str, ...], set[ServerConnection]] = {}
        # Depth by (symbol, levels): sockets whose copy is at the replica's book, and sockets
        # waiting for their snapshot (sent with the next window that has the symbol's book).
        self.replicas = BookReplicas()
        self.depth: dict[tuple[str, int], set[ServerConnection]] = {}
        self.pending: dict[tuple[str, int], set[ServerConnection]] = {}
        self.trade_groups: dict[tuple[str, ...], set[ServerConnection]] = {}
        self.frames_sent = 0

    async def handler(self, ws: ServerConnection) -> None:
        key: tuple[str, ...] = ()
        books: dict[str, int] = {}  # depth symbol -> levels
        trades: tuple[str, ...] = ()
        hello = {"type": "hello", "protocol": 1, "server_time": now_ms(), "symbols": self.catalog}
        await ws.send(orjson.dumps(hello).decode())
        try:
            async for raw in ws:
                try:
                    op = orjson.loads(raw)
                    if op.get("op") != "subscribe":
                        raise ValueError("only subscribe is supported")
                    wanted = [s for s in op["symbols"] if s in self.last_seq]
                    channels = set(op.get("channels", ["ticks"]))
                    levels = op.get("depth_levels", DEFAULT_LEVELS)
                    if not channels <= {"ticks", "depth", "trades"} or not 1 <= levels <= MAX_LEVELS:
                        raise ValueError("bad channels or depth_levels")
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    await ws.send(orjson.dumps({"type": "error", "code": "bad_frame", "message": str(exc)}).decode())
                    continue
                # Ack, snapshots and the group changes happen with no await in between
                # (broadcast writes synchronously): the next batch continues exactly
                # after each snapshot's seq, and never overtakes a snapshot.
                ack = {"type": "ack", "id": op.get("id"), "op": "subscribe", "symbols": wanted}
                broadcast([ws], orjson.dumps(ack), text=True)
                if "ticks" in channels:
                    _leave(self.groups, key, ws)
                    key = tuple(sorted(set(key) | set(wanted)))
                    for s in wanted:
                        snap = {"type": "snapshot", "symbol": s, "epoch": "floor", "seq": self.last_seq[s]}
                        broadcast([ws], orjson.dumps(snap), text=True)
                    self.groups.setdefault(key, set()).add(ws)
                if "depth" in channels:
                    for s in wanted:
                        if s in books:
                            _leave(self.depth, (s, books[s]), ws)
                            _leave(self.pending, (s, books[s]), ws)
                        books[s] = levels
                        self.pending.setdefault((s, levels), set()).add(ws)
                if "trades" in channels:
                    _leave(self.trade_groups, trades, ws)
                    trades = tuple(sorted(set(trades) | set(wanted)))
                    self.trade_groups.setdefault(trades, set()).add(ws)
        except ConnectionClosed:
            pass
        finally:
            _leave(self.groups, key, ws)
            _leave(self.trade_groups, trades, ws)
            for s, levels in books.items():
                _leave(self.depth, (s, levels), ws)
                _leave(self.pending, (s, levels), ws)

    def fan_out(self, message: bytes) -> None:
        batch: dict[str, Any] = orjson.loads(message)
        pieces: dict[str, str] = batch["pieces"]
        self.last_seq.update(batch["last"])
        for key, members in list(self.groups.items()):
            chosen = [pieces[s] for s in key if s in pieces]
            if not chosen or not members:
                continue
            frame = ('{"type":"ticks","data":[' + ",".join(chosen) + "]}").encode()
            broadcast(members, frame, text=True)
            self.frames_sent += len(members)
        books = batch.get("books")
        if books:
            self.fan_out_books(books)
        trades = batch.get("trades")
        if trades:
            for key, members in list(self.trade_groups.items()):
                chosen = [trades[s][TRADES_PIECE] for s in key if s in trades]
                if chosen and members:
                    broadcast(members, trades_frame(chosen).encode(), text=True)
                    self.frames_sent += len(members)

    def fan_out_books(self, books: dict[str, Any]) -> None:
        """The window's depth frames: a diff per (symbol, levels) to the sockets at the book, else snapshots.

        As in Ticker's web processes (``window_of``), entries are only applied for the symbols
        someone follows, once per window whatever the number of level counts asked for.
        """
        window = window_of(self.replicas, books, None)
        for (symbol, levels), members in list(self.depth.items()):
            update = window.book(symbol)
            if update is None or not members:
                continue
            # No book before it: this process missed a window, so the book again.
            frame = update.after.snapshot_frame(symbol, levels) if update.before is None else update.frame(levels)
            if frame is not None:
                broadcast(members, frame.encode(), text=True)
                self.frames_sent += len(members)
        for key in list(self.pending):
            update = window.book(key[0])
            if update is None:
                continue
            members = self.pending.pop(key)
            broadcast(members, update.after.snapshot_frame(*key).encode(), text=True)
            self.frames_sent += len(members)
            self.depth.setdefault(key, set()).update(members)

    async def subscribe(self, url: str, stop: asyncio.Event) -> None:
        client = aioredis.from_url(url, socket_keepalive=True, socket_connect_timeout=3)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(CHANNEL)
        try:
            while not stop.is_set():
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    self.fan_out(message["data"])
        finally:
            await pubsub.aclose()
            await client.aclose()


def _leave(groups: dict[Any, set[ServerConnection]], key: Any, ws: ServerConnection) -> None:
    members = groups.get(key)
    if members is not None:
        members.discard(ws)
        if not members:
            del groups[key]


async def serve_main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.max_seconds, stop.set)
    server = FloorServer(symbol_names(args.symbols))
    async with serve(server.handler, "127.0.0.1", args.port, compression=None, max_size=64 * 1024, ping_interval=None):
        logger.info("floor server on 127.0.0.1:%d", args.port)
        await server.subscribe(args.redis, stop)
    logger.info("floor server stopped after %d frames", server.frames_sent)


class FloorSeries:
    """One symbol's price process and order book, continued from its stored ``seq``."""

    __slots__ = ("book", "due", "epoch", "keyframe_due", "process", "symbol", "trades")

    def __init__(self, spec: SymbolSpec, seq: int, start: int, epoch: str, rng: random.Random) -> None:
        self.symbol = spec.symbol
        self.process = PriceProcess(spec=spec, rng=random.Random(rng.getrandbits(64)), mid=spec.initial_price, seq=seq)
        self.book = OrderBook(spec, random.Random(rng.getrandbits(64)))
        self.epoch = epoch
        self.due = float(start)
        self.keyframe_due = 0
        self.trades: list[dict[str, Any]] = []

    def tick(self, ts: int, interval_ms: float) -> dict[str, Any]:
        """The next tick printed through the book, as Ticker's producer prints it (workers.series.step)."""
        process = self.process
        printed = self.book.on_tick(process.next_tick(ts, interval_ms / 1000.0), process.mid)
        process.mid = printed.mid
        self.trades += [t.to_wire(self.symbol, self.epoch) for t in printed.trades]
        return printed.tick.to_wire()

    def book_window(self, now: int) -> tuple[list[Any] | None, list[Any] | None]:
        """The window's book entry and trades entry (workers.series.book_window, without the store)."""
        book = self.book
        diff = book.take_diff()
        first_u = last_u = 0
        bids = asks = None
        full = False
        if diff is not None:
            first_u, last_u, bids, asks = diff.first_u, diff.last_u, diff.bids, diff.asks
        if now >= self.keyframe_due:
            self.keyframe_due = now + KEYFRAME_EVERY_MS
            key = book.keyframe()
            first_u = diff.first_u if diff is not None else book.u + 1
            last_u, bids, asks, full = book.u, key.bids, key.asks, True
        entry = None if bids is None else book_entry(self.epoch, first_u, last_u, now, bids, asks or [], full)
        trades, self.trades = self.trades, []
        traded = [self.epoch, trades[0]["id"], trades[-1]["id"], trades_piece(trades)] if trades else None
        return entry, traded


async def produce_main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.max_seconds, stop.set)
    symbols = symbol_names(args.symbols)
    interval_ms = len(symbols) * 1000.0 / args.rate
    rng = random.Random(7)
    client = aioredis.from_url(args.redis, socket_keepalive=True, socket_connect_timeout=3)
    start = on_the_clock(now_ms(), round(interval_ms))
    # Series continue from what Redis holds (a restarted producer at another rate); the books
    # start afresh, in a new epoch of their own.
    stored = await client.mget([SEQ_KEY.format(s) for s in symbols])
    epoch = f"floor-{start}"
    # The benchmark symbols as bench/seed.py gives them to Ticker (book parameters: the defaults).
    series = [
        FloorSeries(
            SymbolSpec(s, initial_price=100.0 + i, volatility=0.3, spread_bps=5.0, tick_interval_ms=round(interval_ms)),
            int(v or 0),
            start,
            epoch,
            rng,
        )
        for i, (s, v) in enumerate(zip(symbols, stored, strict=True))
    ]
    # Ticker's schedule (workers.simulator.on_the_clock, next_window_ms): every series of one
    # interval ticks on the instants that are multiples of it, and windows run on the clock
    # too, so both send the same frames at the same instants.
    logger.info("floor producer: %d symbols at %.0f ticks/s", len(symbols), args.rate)
    try:
        while not stop.is_set():
            now = now_ms()
            pieces: dict[str, str] = {}
            last: dict[str, int] = {}
            books: dict[str, Any] = {}
            trades: dict[str, Any] = {}
            for one in series:
                s = one.symbol
                ticks = []
                if now - one.due > 1000:
                    one.due = now
                while one.due <= now:
                    ticks.append(one.tick(int(one.due), interval_ms))
                    one.due += interval_ms
                if ticks:
                    pieces[s] = orjson.dumps(ticks)[1:-1].decode()
                    last[s] = ticks[-1]["seq"]
                entry, traded = one.book_window(now)
                if entry is not None:
                    books[s] = entry
                if traded is not None:
                    trades[s] = traded
            if pieces or books:
                message = {"pieces": pieces, "last": last, "books": books, "trades": trades}
                async with client.pipeline(transaction=False) as pipe:
                    if last:
                        pipe.mset({SEQ_KEY.format(s): n for s, n in last.items()})
                    pipe.publish(CHANNEL, orjson.dumps(message))
                    await pipe.execute()
            done = now_ms()
            delay = (next_window_ms(done, args.window_ms) - done) / 1000.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m bench.floor serve|produce ...``."""
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["serve", "produce"])
    parser.add_argument("--redis", required=True, help="Redis URL")
    parser.add_argument("--port", type=int, default=0, help="serve: port on 127.0.0.1")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0, help="produce: ticks/s over all symbols")
    parser.add_argument("--window-ms", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="lifetime bound")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(process)d %(message)s")
    asyncio.run(serve_main(args) if args.role == "serve" else produce_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
