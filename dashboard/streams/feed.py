"""One market subscription per server process, fanned out locally to its dashboard streams.

With a channel-layer group per consumer, every producer window costs every dashboard a
message: a Redis delivery, a msgpack decode and a dispatch of the same batch, hundreds
of times over. Here the process joins the market group once, decodes each batch once,
and hands it to its streams.

Streams "in step" share their frames. A stream is in step when, for every symbol it
follows, its position is where the feed's own copy of the market is (``MarketFeed.last``:
the last ``(epoch, seq)`` seen of each symbol). In-step streams with the same subscribed
symbols form a group; each window, a group's frame is joined once and the same text is
sent to every member through its raw ASGI send, and the metrics are counted once per
group. Their per-symbol positions are not touched on that path: a member's positions are
the feed's. A stream leaves its group (``detach``: its positions are written out from
the feed's copy) before anything changes its own view (subscribe, unsubscribe, a catalog
change, a resync), and a whole group leaves when a batch does not continue one of its
symbols (a gap, a new epoch): then, and for streams that just subscribed, resumed or lag,
the per-stream path (``StreamConsumer.deliver``, ``Subscriptions.select``) decides. After
each per-stream delivery, a stream whose positions equal the feed's copy joins a group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from dashboard.market.broadcast import MARKET_GROUP, symbol_group
from dashboard.market.protocol import ticks_frame
from ticker import metrics

logger = logging.getLogger(__name__)

Positions = dict[str, tuple[str, int]]


class BatchTarget(Protocol):
    async def deliver(self, ticks: dict[str, Any]) -> None: ...


class SharedTarget(BatchTarget, Protocol):
    """A stream that can share frames with others (``StreamConsumer``)."""

    feed_key: frozenset[str] | None
    raw_send: Callable[[dict[str, Any]], Awaitable[None]]

    def steppable(self) -> frozenset[str] | None:
        """Its subscribed symbols when it may join a group now (nothing held or pending)."""

    def in_step(self, last: Positions) -> bool: ...

    def leave_step(self, last: Positions) -> None:
        """Write its positions out from ``last``: it takes the per-stream path from now on."""


class MarketFeed:
    """The market group's messages for one event loop, delivered to registered streams."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        # Weak: a stream that ends without unregistering must not be kept alive by the feed.
        self.targets: weakref.WeakSet[BatchTarget] = weakref.WeakSet()
        # Registered streams not in a group: served one by one (``deliver``).
        self.loose: weakref.WeakSet[BatchTarget] = weakref.WeakSet()
        # In-step streams by subscribed symbols (members are also in ``targets``).
        self.groups: dict[frozenset[str], weakref.WeakSet[Any]] = {}
        self.last: Positions = {}
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.windows = 0
        self.shared_frames = 0
        # Each symbol's last pieces sent (a few seconds): a shared read a little older than
        # the feed is completed with them instead of read again.
        self.recent: dict[str, deque[list[Any]]] = {}
        self.reads = SubscribeReads(self.last, self.recent)

    async def register(self, target: BatchTarget, wait_seconds: float = 5.0) -> None:
        """Deliver to ``target`` from now on; returns once the subscription is live.

        If the channel layer is unreachable it returns after ``wait_seconds`` anyway: the
        feed keeps trying, and batches flow as soon as it succeeds.
        """
        self.targets.add(target)
        if getattr(target, "feed_key", None) is None:
            self.loose.add(target)
        if self.task is None or self.task.done():
            self.ready.clear()
            self.task = asyncio.get_running_loop().create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), wait_seconds)

    def unregister(self, target: BatchTarget) -> None:
        self.detach(target)
        self.targets.discard(target)
        self.loose.discard(target)

    def detach(self, target: Any) -> None:
        """Take ``target`` out of its group, its positions written out from the feed's copy."""
        key = getattr(target, "feed_key", None)
        if key is None:
            return
        members = self.groups.get(key)
        if members is not None:
            members.discard(target)
            if not members:
                del self.groups[key]
        target.feed_key = None
        target.leave_step(self.last)
        if target in self.targets:
            self.loose.add(target)

    def _try_join(self, target: Any) -> None:
        key = target.steppable()
        if key and target.in_step(self.last):
            members = self.groups.get(key)
            if members is None:
                members = self.groups[key] = weakref.WeakSet()
            members.add(target)
            target.feed_key = key
            self.loose.discard(target)

    async def dispatch(self, ticks: dict[str, Any]) -> None:
        """Deliver one window's batch (``symbol -> [epoch, first_seq, last_seq, piece]``)."""
        self.windows += 1
        last = self.last
        # Symbols this batch does not simply continue (a gap, a new epoch, first sight).
        broken = set()
        for symbol, raw in ticks.items():
            seen = last.get(symbol)
            if seen is None or seen[0] != raw[0] or seen[1] + 1 != raw[1]:
                broken.add(symbol)
        if broken:
            for key in [k for k in self.groups if not broken.isdisjoint(k)]:
                for target in list(self.groups.pop(key)):
                    target.feed_key = None
                    target.leave_step(last)
                    self.loose.add(target)
        for symbol, raw in ticks.items():
            last[symbol] = (raw[0], raw[2])
            kept = self.recent.get(symbol)
            if kept is None:
                kept = self.recent[symbol] = deque(maxlen=RECENT_WINDOWS)
            kept.append(raw)
        frames = ticks_sent = 0
        for key, members in list(self.groups.items()):
            pieces = []
            count = 0
            for symbol, raw in ticks.items():
                if symbol in key:
                    pieces.append(raw[3])
                    count += raw[2] - raw[1] + 1
            # Every member gets the frame, even one detached while others are being sent
            # to: its positions were written out as of this batch.
            targets = list(members)
            if not pieces:
                continue
            message = {"type": "websocket.send", "text": ticks_frame(pieces)}
            for target in targets:
                try:
                    await target.raw_send(message)
                except Exception:
                    logger.debug("shared frame not delivered to a closing stream", exc_info=True)
            frames += len(targets)
            ticks_sent += count * len(targets)
        if frames:
            # Counted once per window, not per frame (a lock, and a file in multiprocess mode).
            self.shared_frames += frames
            metrics.FRAMES_SENT.labels("stream").inc(frames)
            metrics.TICKS_SENT.labels("stream").inc(ticks_sent)
        for target in list(self.loose):
            try:
                await target.deliver(ticks)
            except Exception:
                # One broken stream must not starve the others.
                logger.exception("market batch not delivered to a stream")
                continue
            if getattr(target, "feed_key", False) is None:
                self._try_join(target)

    async def _run(self) -> None:
        while True:
            try:
                channel = await self.layer.new_channel()
                await self.layer.group_add(MARKET_GROUP, channel)
                break
            except Exception as exc:
                logger.warning("market feed not subscribed yet, retrying: %r", exc)
                await asyncio.sleep(1.0)
        self.ready.set()
        try:
            while True:
                message = await self.layer.receive(channel)
                ticks = message.get("ticks")
                if ticks:
                    await self.dispatch(ticks)
        finally:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(MARKET_GROUP, channel)


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
        self.reads = 0

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
            if raw[2] < expected:
                continue
            if raw[0] != epoch or raw[1] != expected:
                return None
            pieces.append(raw[3])
            expected = raw[2] + 1
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
            self.reads += len(todo)
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
            self.reads += len(stale)
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


class SymbolTarget(Protocol):
    """A single-symbol stream (``SymbolConsumer``), fed on the event loop."""

    async def deliver_symbol(self, entry: list[Any], message: dict[str, Any]) -> int:
        """Send what it has not seen of ``entry`` (all of it: ``message``); the frames sent (0 or 1)."""


class SymbolFeed:
    """Each symbol's group joined once per process, its messages handed to that symbol's streams.

    The per-consumer path costs every single-symbol stream a channel-layer delivery, a
    decode and a hop to the consumer's thread and back per message. Here each message is
    decoded once, on the event loop, and each stream's frame goes straight to its socket
    (``SymbolConsumer.deliver_symbol``); the consumer stays a sync consumer for its
    client's frames.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        # A plain dict per symbol: registration and delivery both run on the event loop.
        self.targets: dict[str, dict[SymbolTarget, None]] = {}
        self.joined: set[str] = set()
        self.channel: str | None = None
        self.task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def register(self, symbol: str, target: SymbolTarget) -> None:
        """Deliver ``symbol``'s ticks to ``target`` from now on (returns once subscribed)."""
        self.targets.setdefault(symbol, {})[target] = None
        async with self._lock:
            if self.channel is None:
                self.channel = await self.layer.new_channel()
            if symbol not in self.joined:
                await self.layer.group_add(symbol_group(symbol), self.channel)
                self.joined.add(symbol)
            if self.task is None or self.task.done():
                self.task = asyncio.get_running_loop().create_task(self._run(self.channel))

    async def unregister(self, symbol: str, target: SymbolTarget) -> None:
        found = self.targets.get(symbol)
        if found is not None:
            found.pop(target, None)
            if not found:
                del self.targets[symbol]

    async def dispatch(self, symbol: str, entry: list[Any]) -> None:
        frames = 0
        # Built once: the same message for every stream in step (Daphne does not change it).
        message = {"type": "websocket.send", "text": ticks_frame([entry[3]])}
        for target in list(self.targets.get(symbol, ())):
            try:
                frames += await target.deliver_symbol(entry, message)
            except Exception:
                logger.exception("symbol ticks not delivered to a stream")
        if frames:
            metrics.FRAMES_SENT.labels("symbol").inc(frames)
            metrics.TICKS_SENT.labels("symbol").inc(frames * (entry[2] - entry[1] + 1))

    async def _run(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("symbol feed receive failed, retrying: %r", exc)
                await asyncio.sleep(1.0)
                continue
            symbol, entry = message.get("symbol"), message.get("entry")
            if symbol and entry:
                await self.dispatch(symbol, entry)


_feeds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MarketFeed] = weakref.WeakKeyDictionary()
_symbol_feeds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SymbolFeed] = weakref.WeakKeyDictionary()


def symbol_feed(layer: Any) -> SymbolFeed:
    """The single-symbol feed of the running event loop."""
    loop = asyncio.get_running_loop()
    found = _symbol_feeds.get(loop)
    if found is None:
        found = _symbol_feeds[loop] = SymbolFeed(layer)
    return found


def process_feed(layer: Any) -> MarketFeed:
    """The feed of the running event loop (Daphne runs one loop per process)."""
    loop = asyncio.get_running_loop()
    found = _feeds.get(loop)
    if found is None:
        found = _feeds[loop] = MarketFeed(layer)
    return found
