"""Subscribe reads shared by the streams of one process, within what its feed has sent.

``SubscribeReads`` lives beside ``feed.MarketFeed``: it needs the feed's copy of the
market (``last``, the last ``(epoch, seq)`` of each symbol) and the pieces it sent
lately (``recent``) to tell whether a read made for one stream also serves another.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from dashboard.market.protocol import BATCH_EPOCH, BATCH_FIRST_SEQ, BATCH_LAST_SEQ, BATCH_PIECE

Positions = dict[str, tuple[str, int]]


SinceKey = tuple[str, int] | None
# Kept reads (symbol x interval x distinct resume position): pruned of stale ones past this.
MAX_SHARED_READS = 4096
# How long one read serves later subscribers (completed with the pieces sent since), and
# how many windows of pieces the feed keeps per symbol for that.
MAX_SHARED_AGE = 2.0
RECENT_WINDOWS = 40


class SubscribeReads:
    """Subscribe reads shared by the streams of one process, within what the feed has sent.

    A crowd of dashboards subscribing at once (a deploy, a restart) would each read the
    same 50 snapshots of 200 candles from Redis and parse them: the storm's main cost. A
    read is the same for every stream asking about the same symbol, interval and ``since``
    until the symbol ticks again, so one read serves them all while it is not older than
    the feed's copy of the market (``MarketFeed.last``): a stream given a state at
    ``(epoch, seq)`` then misses nothing, since every batch after ``seq`` is still to come
    (held while it subscribes) and the ones before are skipped. Reads in flight are
    shared too. The built frame is kept with the state (the same bytes for everyone).
    """

    def __init__(self, last: Positions, recent: dict[str, deque[list[Any]]] | None = None) -> None:
        self.last = last
        self.recent = recent if recent is not None else {}
        self.read_at: dict[tuple[str, str, SinceKey, int], float] = {}
        self.states: dict[tuple[str, str, SinceKey, int], Any] = {}
        self.frames: dict[tuple[str, str, SinceKey, int], dict[Any, Any]] = {}
        self.pending: dict[tuple[str, str, SinceKey, int], asyncio.Future[Any]] = {}
        # ``behind`` per symbol for one (feed position, read position): a crowd subscribing
        # within a window asks it of the same pair three times per symbol per stream.
        self._behind: dict[str, tuple[tuple[str, int], str | None, int, tuple[list[str], int] | None]] = {}
        self.hits = 0
        # Symbols read from Redis (``hits``: answered from a shared read instead).
        self.fetched = 0

    def _fresh(self, key: tuple[str, str, SinceKey, int], state: Any) -> bool:
        if time.monotonic() - self.read_at.get(key, 0.0) > MAX_SHARED_AGE:
            return False
        snap = state.snapshot
        return self.behind(key[0], snap.epoch, snap.seq) is not None

    def behind(self, symbol: str, epoch: str | None, seq: int) -> tuple[list[str], int] | None:
        """The pieces the feed has sent of ``symbol`` after ``(epoch, seq)`` and the seq they end at.

        None when they are not all kept (another epoch, too far back): a fresh read is needed.
        """
        seen = self.last.get(symbol)
        if seen is None or (seen[0] == epoch and seq >= seen[1]):
            return [], seq
        if seen[0] != epoch:
            return None
        # The feed's position moves with every piece it keeps, so an equal one means the same pieces.
        known = self._behind.get(symbol)
        if known is not None and known[0] == seen and known[1] == epoch and known[2] == seq:
            return known[3]
        found = self._pieces_after(symbol, epoch, seq, seen)
        self._behind[symbol] = (seen, epoch, seq, found)
        return found

    def _pieces_after(
        self, symbol: str, epoch: str | None, seq: int, seen: tuple[str, int]
    ) -> tuple[list[str], int] | None:
        pieces: list[str] = []
        expected = seq + 1
        for raw in self.recent.get(symbol, ()):
            if raw[BATCH_LAST_SEQ] < expected:
                continue
            if raw[BATCH_EPOCH] != epoch or raw[BATCH_FIRST_SEQ] != expected:
                return None
            pieces.append(raw[BATCH_PIECE])
            expected = raw[BATCH_LAST_SEQ] + 1
        return (pieces, expected - 1) if expected - 1 == seen[1] else None

    async def read(
        self,
        reader: Callable[[list[str], dict[str, tuple[str, int]]], Awaitable[dict[str, Any]]],
        symbols: list[str],
        interval: str,
        since: dict[str, tuple[str, int]],
        max_missed: int,
    ) -> dict[str, Any]:
        """Each symbol's ``SubscribeState``; ``reader(symbols, since)`` reads the rest in one round trip."""
        found: dict[str, Any] = {}
        waits: dict[str, asyncio.Future[Any]] = {}
        todo: list[str] = []
        for symbol in symbols:
            key = (symbol, interval, since.get(symbol), max_missed)
            state = self.states.get(key)
            if state is not None and self._fresh(key, state):
                found[symbol] = state
                self.hits += 1
            elif key in self.pending:
                waits[symbol] = self.pending[key]
                self.hits += 1
            else:
                todo.append(symbol)
        if todo:
            loop = asyncio.get_running_loop()
            mine = {s: (s, interval, since.get(s), max_missed) for s in todo}
            futures = {s: loop.create_future() for s in todo}
            for symbol, key in mine.items():
                self.pending[key] = futures[symbol]
            self.fetched += len(todo)
            try:
                states = await reader(todo, {s: since[s] for s in todo if s in since})
            except BaseException as exc:
                for symbol, key in mine.items():
                    self.pending.pop(key, None)
                    if not futures[symbol].done():
                        futures[symbol].set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
                        futures[symbol].exception()  # retrieved: others may not be waiting
                raise
            if len(self.states) > MAX_SHARED_READS:
                self._prune()
            for symbol, key in mine.items():
                self.pending.pop(key, None)
                state = states[symbol]
                futures[symbol].set_result(state)
                self.states[key] = state
                self.read_at[key] = time.monotonic()
                self.frames.pop(key, None)
                found[symbol] = state
        for symbol, future in waits.items():
            found[symbol] = await future
        # A read shared from before this caller's hold may have been overtaken by batches
        # the feed sent meanwhile and no longer kept: those symbols are read again, unshared.
        stale = [s for s, state in found.items() if self.behind(s, state.snapshot.epoch, state.snapshot.seq) is None]
        if stale:
            self.fetched += len(stale)
            found.update(await reader(stale, {s: since[s] for s in stale if s in since}))
        return found

    def _prune(self) -> None:
        for key in [k for k, state in self.states.items() if not self._fresh(k, state)]:
            del self.states[key]
            self.frames.pop(key, None)
            self.read_at.pop(key, None)
        if len(self.states) > MAX_SHARED_READS:
            self.states.clear()
            self.frames.clear()
            self.read_at.clear()

    def frame(
        self, symbol: str, interval: str, since: SinceKey, max_missed: int, state: Any, variant: Any, build: Any
    ) -> Any:
        """``build()`` once per state and ``variant`` (the catalog status, the resume asked for)."""
        key = (symbol, interval, since, max_missed)
        if self.states.get(key) is not state:
            return build()
        built = self.frames.setdefault(key, {})
        result = built.get(variant)
        if result is None:
            result = built[variant] = build()
        return result
