#!/usr/bin/env python3
"""A minimal Ticker stream client for scripts: token auth, subscribe, ticks, gaps, resume.

    python -m pip install -r examples/requirements.txt   # websockets, nothing else
    export TICKER_TOKEN=tkr_...        # create one on the "API tokens" page
    python examples/stream_client.py --url ws://127.0.0.1:8000 AAPL BTC-USD
    python examples/stream_client.py --depth --depth-levels 10 AAPL BTC-USD   # + order book, trades
    python examples/stream_client.py --url wss://ticker.example.com --cafile ca.pem AAPL   # a private CA

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
* close 4401 (token invalid, expired or revoked) ends it with exit status 2;
* over ``wss://`` it verifies the server's certificate against the system's CAs, or only
  those of ``--cafile PATH`` (PEM: a private or test CA); a certificate that does not
  verify ends it at once with ``tls failed: ...`` and exit status 3 (retrying cannot help).

With ``--depth`` (``--depth-levels N``, 1-50, default 20; at most ``max_depth_symbols``
symbols, 10 by default) it also subscribes the ``depth`` and ``trades`` channels and keeps
each symbol's order book (``OrderBook``, pure) from ``depth_snapshot`` and ``depth``
frames, printing for example::

    depth_snapshot AAPL epoch=19ab3c0d1f2 u=8812 bid=189.5 ask=189.55 spread=0.05 levels=20/20
    book AAPL u=8815 bid=189.5 ask=189.55 spread=0.05 levels=20/20
    trade AAPL id=5521 buy 120.0 @ 189.55
    depth gap AAPL expected U=8816 got U=8820 -> resubscribe depth

* a ``depth`` frame whose ``U`` is not the book's ``u + 1``, or of another ``epoch``, drops
  the book and re-subscribes depth for that symbol (the server answers with a fresh
  ``depth_snapshot``); on a reconnect every book is rebuilt from the new connection's
  snapshot, while ticks resume with ``since`` as above;
* after each depth frame it checks the book against the protocol: its best bid and ask
  are the last tick's, it is not crossed and holds at most N levels a side (checked when
  that symbol's ticks are current: not while a resume or a new epoch's snapshot is on the
  way); a failure prints ``depth inconsistent ...``;
* stopped (Ctrl-C or SIGTERM) it prints a summary, ``depth ok: 812 updates, 4 snapshots,
  0 gaps, 790 checked, 390 trades`` (``checked``: frames whose top was compared with the
  tick's), or ``depth FAILED: 2 inconsistent, ...`` with exit status 1.

Needs only the ``websockets`` package (``examples/requirements.txt``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import ssl
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


# What ``OrderBook.apply`` made of a ``depth`` frame.
APPLIED = "applied"
WAITING = "waiting"  # no book yet (its snapshot is on the way): the frame is ignored
GAP = "gap"  # ``U`` is not ``u + 1``: the book is dropped, depth must be re-subscribed
NEW_EPOCH = "epoch"  # another epoch: likewise


@dataclass
class OrderBook:
    """One symbol's order book, kept from ``depth_snapshot`` and ``depth`` frames. Pure: no I/O.

    ``u`` is the last update applied; None until a snapshot (or after a gap): no book.
    """

    levels: int = 20
    epoch: str | None = None
    u: int | None = None
    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.u is not None

    def reset(self) -> None:
        """Drop the book: only a snapshot starts it again."""
        self.u = None
        self.bids.clear()
        self.asks.clear()

    def snapshot(self, frame: dict[str, Any]) -> None:
        self.epoch, self.u = frame["epoch"], frame["u"]
        self.bids = {price: size for price, size in frame["bids"] if size}
        self.asks = {price: size for price, size in frame["asks"] if size}

    def apply(self, frame: dict[str, Any]) -> str:
        """Apply one ``depth`` frame: ``APPLIED``, ``WAITING``, ``GAP`` or ``NEW_EPOCH``."""
        if self.u is None:
            return WAITING
        if frame["epoch"] != self.epoch:
            self.reset()
            return NEW_EPOCH
        if frame["U"] != self.u + 1:
            self.reset()
            return GAP
        for side, changes in ((self.bids, frame["bids"]), (self.asks, frame["asks"])):
            for price, size in changes:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
        self.u = frame["u"]
        return APPLIED

    @property
    def best_bid(self) -> float | None:
        return max(self.bids) if self.bids else None

    @property
    def best_ask(self) -> float | None:
        return min(self.asks) if self.asks else None

    @property
    def spread(self) -> float | None:
        bid, ask = self.best_bid, self.best_ask
        return None if bid is None or ask is None else ask - bid

    def problems(self, quote: tuple[float, float] | None) -> list[str]:
        """What breaks the protocol's promises after a depth frame; ``quote``: the last tick's
        ``(bid, ask)``, or None when it is not known to be current (then the top is not compared)."""
        found = []
        if len(self.bids) > self.levels or len(self.asks) > self.levels:
            found.append(f"levels={len(self.bids)}/{len(self.asks)} over {self.levels}")
        bid, ask = self.best_bid, self.best_ask
        if bid is not None and ask is not None:
            if bid >= ask:
                found.append(f"crossed bid={bid} ask={ask}")
            if quote is not None and (bid, ask) != quote:
                found.append(f"top bid={bid} ask={ask} but the last tick's bid={quote[0]} ask={quote[1]}")
        return found


@dataclass
class DepthStats:
    """What the depth channels brought, for the final summary."""

    updates: int = 0
    snapshots: int = 0
    gaps: int = 0
    checked: int = 0
    inconsistent: int = 0
    trades: int = 0

    def summary(self) -> str:
        verdict = f"depth FAILED: {self.inconsistent} inconsistent, " if self.inconsistent else "depth ok: "
        return (
            f"{verdict}{self.updates} updates, {self.snapshots} snapshots, {self.gaps} gaps, "
            f"{self.checked} checked, {self.trades} trades"
        )


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
    # ``--depth``: the levels a side of each book (None: ticks only).
    depth_levels: int | None = None
    books: dict[str, OrderBook] = field(default_factory=dict)
    # symbol -> the (bid, ask) of the last tick applied: what its book's top must be.
    quotes: dict[str, tuple[float, float]] = field(default_factory=dict)
    precision: dict[str, int] = field(default_factory=dict)
    depth: DepthStats = field(default_factory=DepthStats)

    def subscribe(self, symbols: list[str], with_book: bool = False) -> dict[str, Any]:
        """A subscribe for ``symbols``, asking to resume those with a known position;
        ``with_book``: their depth and trades too (a fresh ``depth_snapshot`` each)."""
        since = {}
        for symbol in symbols:
            epoch, seq = self.positions.get(symbol, (None, 0))
            if epoch:  # a series that had not started has nothing to resume
                since[symbol] = {"epoch": epoch, "seq": seq}
        frame: dict[str, Any] = {"op": "subscribe", "id": self.next_id, "symbols": symbols, "interval": self.interval}
        if since:
            frame["since"] = since
        if with_book and self.depth_levels is not None:
            frame["channels"] = ["ticks", "depth", "trades"]
            frame["depth_levels"] = self.depth_levels
            for symbol in symbols:
                self._book(symbol).reset()
        self.next_id += 1
        self.awaiting.extend(symbols)
        return frame

    def subscribe_depth(self, symbol: str) -> dict[str, Any]:
        """Depth again for one symbol (after a ``U`` gap or a new epoch): the server acks and
        sends a fresh ``depth_snapshot``; its ticks and trades go on as they were."""
        assert self.depth_levels is not None
        self._book(symbol).reset()
        frame = {
            "op": "subscribe",
            "id": self.next_id,
            "symbols": [symbol],
            "channels": ["depth"],
            "depth_levels": self.depth_levels,
        }
        self.next_id += 1
        return frame

    def on_connect(self) -> list[dict[str, Any]]:
        self.awaiting.clear()
        return [self.subscribe(self.symbols, with_book=True)]

    def handle(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        kind = frame.get("type")
        if kind == "hello":
            self.heartbeat_ms = int(frame.get("heartbeat_ms", 5000))
            self._catalog(frame.get("symbols") or [])
            emit(f"connected protocol={frame.get('protocol')} heartbeat_ms={self.heartbeat_ms}")
            most = (frame.get("limits") or {}).get("max_depth_symbols")
            if self.depth_levels is not None and most is not None and len(self.symbols) > most:
                emit(f"warning: --depth follows at most {most} symbols a connection; the subscribe will be refused")
        elif kind == "symbols":
            self._catalog(frame.get("symbols") or [])
        elif kind == "snapshot":
            self._answered(frame["symbol"])
            self.positions[frame["symbol"]] = (frame["epoch"], frame["seq"])
            quote = frame.get("quote") or {}
            if quote.get("bid") is not None and quote.get("ask") is not None:
                self.quotes[frame["symbol"]] = (quote["bid"], quote["ask"])
            price = quote.get("price")
            note = " recovered=false" if frame.get("recovered") is False else ""
            emit(f"snapshot {frame['symbol']} epoch={frame['epoch']} seq={frame['seq']} price={price}{note}")
        elif kind == "ticks":
            return self._ticks(frame)
        elif kind == "depth_snapshot":
            self._depth_snapshot(frame)
        elif kind == "depth":
            return self._depth(frame)
        elif kind == "trades":
            self._trades(frame)
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
        if "bid" in tick and "ask" in tick:
            self.quotes[tick["symbol"]] = (tick["bid"], tick["ask"])

    # --- depth and trades -----------------------------------------------------------

    def _catalog(self, symbols: list[dict[str, Any]]) -> None:
        self.precision = {s["symbol"]: int(s.get("precision", 2)) for s in symbols if "symbol" in s}

    def _book(self, symbol: str) -> OrderBook:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = OrderBook(levels=self.depth_levels or 20)
        return book

    def _depth_snapshot(self, frame: dict[str, Any]) -> None:
        symbol = frame["symbol"]
        if symbol not in self.books:
            return  # not a book we follow
        book = self.books[symbol]
        book.snapshot(frame)
        self.depth.snapshots += 1
        emit(f"depth_snapshot {symbol} epoch={book.epoch} u={book.u} {self._top(symbol, book)}")
        self._check(symbol, book)

    def _depth(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        symbol = frame["symbol"]
        book = self.books.get(symbol)
        if book is None:
            return []
        expected, epoch = (book.u or 0) + 1, book.epoch
        outcome = book.apply(frame)
        if outcome == WAITING:
            return []  # frames of the copy the server had before our re-subscribe
        if outcome in (GAP, NEW_EPOCH):
            self.depth.gaps += 1
            what = f"U={expected} got U={frame['U']}" if outcome == GAP else f"epoch={epoch} got epoch={frame['epoch']}"
            emit(f"depth gap {symbol} expected {what} -> resubscribe depth")
            return [self.subscribe_depth(symbol)]
        self.depth.updates += 1
        emit(f"book {symbol} u={book.u} {self._top(symbol, book)}")
        self._check(symbol, book)
        return []

    def _check(self, symbol: str, book: OrderBook) -> None:
        """The book against the protocol, after a depth frame."""
        # The top is the last tick's only while this symbol's ticks are current: not while
        # their resume or snapshot is awaited, nor when the book is in an epoch they are not.
        epoch = self.positions.get(symbol, (None, 0))[0]
        current = symbol not in self.awaiting and epoch == book.epoch
        problems = book.problems(self.quotes.get(symbol) if current else None)
        if current and symbol in self.quotes:
            self.depth.checked += 1
        if problems:
            self.depth.inconsistent += 1
            emit(f"depth inconsistent {symbol} u={book.u}: {'; '.join(problems)}")

    def _top(self, symbol: str, book: OrderBook) -> str:
        spread = book.spread
        shown = "-" if spread is None else f"{spread:.{self.precision.get(symbol, 8)}f}"
        return f"bid={book.best_bid} ask={book.best_ask} spread={shown} levels={len(book.bids)}/{len(book.asks)}"

    def _trades(self, frame: dict[str, Any]) -> None:
        for trade in frame.get("data", []):
            self.depth.trades += 1
            emit(f"trade {trade['symbol']} id={trade['id']} {trade['side']} {trade['size']} @ {trade['price']}")


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


async def run_once(
    url: str, token: str, state: StreamState, backoff: Backoff, tls: ssl.SSLContext | None = None
) -> None:
    """One connection, until it closes; raises ``ConnectionClosed`` or ``OSError``."""
    headers = {"Authorization": f"Bearer {token}"}
    options: dict[str, Any] = {"ssl": tls} if tls is not None else {}
    async with connect(
        f"{url}/ws/stream/", additional_headers=headers, open_timeout=10, max_size=2**22, **options
    ) as ws:
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


async def main_async(url: str, token: str, state: StreamState, tls: ssl.SSLContext | None = None) -> int:
    backoff = Backoff()
    task = asyncio.current_task()
    if task is not None:
        # SIGTERM ends it as Ctrl-C does: with the summary (Windows has no signal handlers here).
        # SIGINT is handled here too, not left to asyncio.run: a parent that ignores SIGINT (a
        # shell's background job, some CI runners) passes that on, and asyncio then installs no
        # handler, so Ctrl-C, or a supervisor's SIGINT, would do nothing.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, AttributeError):
                loop.add_signal_handler(signum, task.cancel)
    while True:
        code: int | None = None
        try:
            await run_once(url, token, state, backoff, tls)
        except ssl.SSLCertVerificationError as exc:
            emit(f"tls failed: {exc.verify_message}: give the server's CA with --cafile PATH")
            return 3
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
    parser.add_argument("--depth", action="store_true", help="also keep each symbol's order book and print trades")
    parser.add_argument(
        "--depth-levels",
        type=int,
        default=None,
        metavar="N",
        help="levels a side of each book, 1-50 (default 20; implies --depth)",
    )
    parser.add_argument(
        "--cafile",
        default=None,
        metavar="PATH",
        help="verify the wss:// server against the CA certificates in PATH (PEM) instead of the system's",
    )
    args = parser.parse_args()
    token = args.token or os.environ.get("TICKER_TOKEN", "")
    if not token:
        parser.error("an API token is needed: set TICKER_TOKEN (create one on the API tokens page)")
    if args.depth_levels is not None and not 1 <= args.depth_levels <= 50:
        parser.error("--depth-levels must be 1-50")
    depth_levels = None
    if args.depth or args.depth_levels is not None:  # --depth-levels alone implies --depth
        depth_levels = args.depth_levels or 20
    tls = None
    if args.cafile:
        if not args.url.startswith("wss://"):
            parser.error("--cafile is for a wss:// --url")
        try:
            tls = ssl.create_default_context(cafile=args.cafile)
        except (OSError, ssl.SSLError) as exc:
            parser.error(f"--cafile {args.cafile}: {exc}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    state = StreamState(symbols=list(dict.fromkeys(args.symbols)), interval=args.interval, depth_levels=depth_levels)
    try:
        status = asyncio.run(main_async(args.url.rstrip("/"), token, state, tls))
    except (KeyboardInterrupt, asyncio.CancelledError):
        status = 0
    if depth_levels is not None:
        emit(state.depth.summary())
        if state.depth.inconsistent and status == 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
