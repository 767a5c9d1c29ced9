"""The floor reference: a plain ``websockets`` server on one Redis pub/sub subscription. No Django.

``python -m bench.floor serve --port P --redis URL`` accepts dashboards speaking the
same protocol subset as Ticker (``hello``; ``subscribe`` answered by ``ack`` and one
``snapshot`` per symbol; then ``ticks`` frames). One task reads one Redis subscription;
per producer window it builds each distinct subscription set's frame once and hands
the already-encoded bytes to ``websockets.broadcast``.

``python -m bench.floor produce --redis URL --rate R`` ticks ``--symbols`` symbols
(``S00``...) at ``R`` ticks/s in total and publishes one message per 100 ms window
carrying every symbol's ticks, each symbol's ticks encoded once. It also stores the
last ``seq`` per symbol under ``floor:seq:<SYM>`` so the harness can measure its rate.

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

logger = logging.getLogger("bench.floor")

CHANNEL = "floor:ticks"
SEQ_KEY = "floor:seq:{}"


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
        self.frames_sent = 0

    async def handler(self, ws: ServerConnection) -> None:
        key: tuple[str, ...] = ()
        hello = {"type": "hello", "protocol": 1, "server_time": now_ms(), "symbols": self.catalog}
        await ws.send(orjson.dumps(hello).decode())
        try:
            async for raw in ws:
                try:
                    op = orjson.loads(raw)
                    if op.get("op") != "subscribe":
                        raise ValueError("only subscribe is supported")
                    wanted = [s for s in op["symbols"] if s in self.last_seq]
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    await ws.send(orjson.dumps({"type": "error", "code": "bad_frame", "message": str(exc)}).decode())
                    continue
                # Ack, snapshots and the group change happen with no await in between
                # (broadcast writes synchronously): the next batch continues exactly
                # after each snapshot's seq, and never overtakes a snapshot.
                self._leave(key, ws)
                key = tuple(sorted(set(key) | set(wanted)))
                ack = {"type": "ack", "id": op.get("id"), "op": "subscribe", "symbols": wanted}
                broadcast([ws], orjson.dumps(ack), text=True)
                for s in wanted:
                    snap = {"type": "snapshot", "symbol": s, "epoch": "floor", "seq": self.last_seq[s]}
                    broadcast([ws], orjson.dumps(snap), text=True)
                self.groups.setdefault(key, set()).add(ws)
        except ConnectionClosed:
            pass
        finally:
            self._leave(key, ws)

    def _leave(self, key: tuple[str, ...], ws: ServerConnection) -> None:
        members = self.groups.get(key)
        if members is not None:
            members.discard(ws)
            if not members:
                del self.groups[key]

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
    start = now_ms()
    # Series continue from what Redis holds (a restarted producer at another rate).
    stored = await client.mget([SEQ_KEY.format(s) for s in symbols])
    seq = {s: int(v or 0) for s, v in zip(symbols, stored, strict=True)}
    price = {s: 100.0 + i for i, s in enumerate(symbols)}
    # Every series starts on the same instant, as Ticker's producer starts the symbols it acquires.
    due = dict.fromkeys(symbols, float(start))
    window = args.window_ms / 1000.0
    next_at = time.monotonic()
    logger.info("floor producer: %d symbols at %.0f ticks/s", len(symbols), args.rate)
    try:
        while not stop.is_set():
            now = now_ms()
            pieces: dict[str, str] = {}
            for s in symbols:
                ticks = []
                if now - due[s] > 1000:
                    due[s] = now
                while due[s] <= now:
                    seq[s] += 1
                    price[s] = max(0.01, price[s] * (1 + rng.gauss(0, 0.0005)))
                    p = round(price[s], 2)
                    ticks.append(
                        {
                            "symbol": s,
                            "seq": seq[s],
                            "ts": int(due[s]),
                            "price": p,
                            "bid": round(p * 0.9995, 2),
                            "ask": round(p * 1.0005, 2),
                            "volume": rng.randint(1, 500),
                        }
                    )
                    due[s] += interval_ms
                if ticks:
                    pieces[s] = orjson.dumps(ticks)[1:-1].decode()
            if pieces:
                last = {s: seq[s] for s in pieces}
                async with client.pipeline(transaction=False) as pipe:
                    pipe.mset({SEQ_KEY.format(s): n for s, n in last.items()})
                    pipe.publish(CHANNEL, orjson.dumps({"pieces": pieces, "last": last}))
                    await pipe.execute()
            next_at += window
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at = time.monotonic()
                delay = 0
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
