#!/usr/bin/env python3
"""A minimal Ticker stream client for scripts: token auth, subscribe, ticks, gaps, resume.

    export TICKER_TOKEN=tkr_...        # create one on the "API tokens" page
    python examples/stream_client.py --url ws://127.0.0.1:8000 AAPL BTC-USD

It prints one line per event on stdout (that is its product), for example::

    connected protocol=1 heartbeat_ms=5000
    snapshot AAPL epoch=19ab3c0d1f2 seq=1234 price=189.52
    tick AAPL seq=1235 price=189.53
    gap AAPL expected=1236 got=1240 -> resubscribe since 1235
    resumed AAPL ticks=4 seq=1239
    disconnected code=1006 retry_in=0.41s
    connect failed retry_in=0.93s
    connected protocol=1 heartbeat_ms=5000
    resumed AAPL ticks=8 seq=47

What it shows (see docs/protocol.md):

* ``Authorization: Bearer <token>`` on the handshake, and no ``Origin`` header: the
  server admits a script on its token alone (browsers always send an Origin);
* per symbol, the ``(epoch, seq)`` of the last tick applied; a tick with ``seq`` beyond
  ``last + 1`` is a gap: it re-subscribes that symbol with ``since`` and the server
  sends the missed ticks (``recovered: true``) or, if they are no longer held, a snapshot;
* on a dropped connection it reconnects with exponential backoff and full jitter,
  re-subscribing everything with ``since``, so a short outage costs no snapshot;
* it treats 3 heartbeats of silence as a dead connection;
* close 4401 (token invalid, expired or revoked) ends it with exit status 2.

Needs only the ``websockets`` package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

logger = logging.getLogger("stream_client")

NOT_AUTHENTICATED = 4401
RATE_LIMITED = 4429


def emit(line: str) -> None:
    """One event line on stdout: the client's output."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class StreamState:
    """What the client knows of each series; survives reconnects. Pure: no I/O.

    ``handle`` takes one server frame and returns the frames to send back.
    """

    symbols: list[str]
    interval: str = "1m"
    # symbol -> (epoch, seq of the last tick applied); absent until its first snapshot.
    positions: dict[str, tuple[str | None, int]] = field(default_factory=dict)
    # Symbols whose answer (snapshot or recovered ticks) is awaited, in the server's order.
    awaiting: deque[str] = field(default_factory=deque)
    next_id: int = 1
    heartbeat_ms: int = 5000

    def subscribe(self, symbols: list[str]) -> dict[str, Any]:
        """A subscribe for ``symbols``, asking to resume those with a known position."""
        since = {}
        for symbol in symbols:
            epoch, seq = self.positions.get(symbol, (None, 0))
            if epoch:  # a series that had not started has nothing to resume
                since[symbol] = {"epoch": epoch, "seq": seq}
        frame: dict[str, Any] = {"op": "subscribe", "id": self.next_id, "symbols": symbols, "interval": self.interval}
        if since:
            frame["since"] = since
        self.next_id += 1
        self.awaiting.extend(symbols)
        return frame

    def on_connect(self) -> list[dict[str, Any]]:
        self.awaiting.clear()
        return [self.subscribe(self.symbols)]

    def handle(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        kind = frame.get("type")
        if kind == "hello":
            self.heartbeat_ms = int(frame.get("heartbeat_ms", 5000))
            emit(f"connected protocol={frame.get('protocol')} heartbeat_ms={self.heartbeat_ms}")
        elif kind == "snapshot":
            self._answered(frame["symbol"])
            self.positions[frame["symbol"]] = (frame["epoch"], frame["seq"])
            price = (frame.get("quote") or {}).get("price")
            note = " recovered=false" if frame.get("recovered") is False else ""
            emit(f"snapshot {frame['symbol']} epoch={frame['epoch']} seq={frame['seq']} price={price}{note}")
        elif kind == "ticks":
            return self._ticks(frame)
        elif kind == "error":
            emit(f"error code={frame.get('code')} message={frame.get('message')}")
        return []

    def _answered(self, symbol: str) -> None:
        if symbol in self.awaiting:
            self.awaiting.remove(symbol)

    def _ticks(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        data = frame.get("data", [])
        if frame.get("recovered"):
            # The answer to a resume: the missed ticks of the next awaited symbol, maybe none.
            symbol = data[0]["symbol"] if data else (self.awaiting[0] if self.awaiting else None)
            if symbol is not None:
                self._answered(symbol)
                for tick in data:
                    self._apply(tick)
                seq = self.positions.get(symbol, (None, 0))[1]
                emit(f"resumed {symbol} ticks={len(data)} seq={seq}")
            return []
        replies: list[dict[str, Any]] = []
        for tick in data:
            symbol = tick["symbol"]
            if symbol in self.awaiting or symbol not in self.positions:
                continue  # its snapshot or recovery is on the way and covers this tick
            _, last = self.positions[symbol]
            if tick["seq"] <= last:
                continue  # already applied (a recovered tick also delivered live)
            if tick["seq"] > last + 1:
                emit(f"gap {symbol} expected={last + 1} got={tick['seq']} -> resubscribe since {last}")
                replies.append(self.subscribe([symbol]))
                continue
            self._apply(tick)
            emit(f"tick {symbol} seq={tick['seq']} price={tick['price']}")
        return replies

    def _apply(self, tick: dict[str, Any]) -> None:
        epoch, _ = self.positions.get(tick["symbol"], (None, 0))
        self.positions[tick["symbol"]] = (epoch, tick["seq"])


class Backoff:
    """Exponential backoff with full jitter: retry in uniform(0, min(cap, base * 2**n))."""

    def __init__(self, base: float = 0.25, cap: float = 5.0, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        delay = self.rng.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


async def run_once(url: str, token: str, state: StreamState, backoff: Backoff) -> None:
    """One connection, until it closes; raises ``ConnectionClosed`` or ``OSError``."""
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(f"{url}/ws/stream/", additional_headers=headers, open_timeout=10, max_size=2**22) as ws:
        for frame in state.on_connect():
            await ws.send(json.dumps(frame))
        while True:
            # Three heartbeats of silence: the connection is dead even if TCP has not noticed.
            raw = await asyncio.wait_for(ws.recv(), timeout=3 * state.heartbeat_ms / 1000)
            for reply in state.handle(json.loads(raw)):
                await ws.send(json.dumps(reply))
            if not state.awaiting:
                # Subscribed and served: the connection works, the next drop starts the backoff afresh
                # (a server that accepts and then fails at once keeps growing it).
                backoff.reset()


async def main_async(url: str, token: str, symbols: list[str], interval: str) -> int:
    state = StreamState(symbols=symbols, interval=interval)
    backoff = Backoff()
    while True:
        code: int | None = None
        try:
            await run_once(url, token, state, backoff)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
        except InvalidStatus as exc:
            code = exc.response.status_code
        except (OSError, TimeoutError) as exc:
            logger.info("connection failed: %r", exc)
        if code == NOT_AUTHENTICATED:
            emit("closed code=4401: the token is invalid, expired or revoked")
            return 2
        delay = backoff.next()
        if code == RATE_LIMITED:
            delay += 5.0  # the server asked us to slow down
        emit(f"disconnected code={code} retry_in={delay:.2f}s" if code else f"connect failed retry_in={delay:.2f}s")
        await asyncio.sleep(delay)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("symbols", nargs="+", help="symbol codes, e.g. AAPL BTC-USD")
    parser.add_argument("--url", default=os.environ.get("TICKER_URL", "ws://127.0.0.1:8000"))
    parser.add_argument("--interval", default="1m", help="candle interval of snapshots")
    parser.add_argument("--token", default=None, help="API token (default: $TICKER_TOKEN; prefer the variable)")
    args = parser.parse_args()
    token = args.token or os.environ.get("TICKER_TOKEN", "")
    if not token:
        parser.error("an API token is needed: set TICKER_TOKEN (create one on the API tokens page)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    try:
        return asyncio.run(main_async(args.url.rstrip("/"), token, args.symbols, args.interval))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
