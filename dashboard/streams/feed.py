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
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from dashboard.market.broadcast import MARKET_GROUP, symbol_group
from dashboard.market.depth import BookReplicas, MarketWindow, window_of
from dashboard.market.loop_services import BackgroundTask, services
from dashboard.market.protocol import BATCH_EPOCH, BATCH_FIRST_SEQ, BATCH_LAST_SEQ, BATCH_PIECE, ticks_frame
from dashboard.streams.shared_reads import RECENT_WINDOWS, SubscribeReads
from ticker import metrics

logger = logging.getLogger(__name__)

Positions = dict[str, tuple[str, int]]
# An unreachable channel layer is retried this often (a Redis restart takes seconds).
LAYER_RETRY_SECONDS = 1.0


async def layer_messages(layer: Any, channel: str, what: str) -> AsyncIterator[dict[str, Any]]:
    """``channel``'s messages, for ever: a failed receive (Redis away) is logged and retried."""
    while True:
        try:
            message = await layer.receive(channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("%s receive failed, retrying: %r", what, exc)
            await asyncio.sleep(LAYER_RETRY_SECONDS)
            continue
        yield message


class BatchTarget(Protocol):
    async def deliver(self, ticks: dict[str, Any], window: MarketWindow | None) -> None: ...


class SharedTarget(BatchTarget, Protocol):
    """A stream that can share frames with others (``StreamConsumer``)."""

    feed_key: frozenset[str] | None
    raw_send: Callable[[dict[str, Any]], Awaitable[None]]
    # The connection's synchronous text write under Daphne (``consumers.text_sender``), else None.
    send_text: Callable[[str], None] | None

    def steppable(self) -> frozenset[str] | None:
        """Its subscribed symbols when it may join a group now (nothing held or pending)."""

    def in_step(self, last: Positions) -> bool: ...

    def leave_step(self, last: Positions) -> None:
        """Write its positions out from ``last``: it takes the per-stream path from now on."""

    # Whether it follows any symbol's depth or trades (``deliver_books`` after each shared frame).
    follows_books: bool

    async def deliver_books(self, window: MarketWindow) -> None:
        """Its depth and trades frames of ``window``, after the window's shared ticks frame."""


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
        self.subscription = BackgroundTask(self._run)
        self.ready = asyncio.Event()
        self.windows = 0
        self.shared_frames = 0
        # Each symbol's last pieces sent (a few seconds): a shared read a little older than
        # the feed is completed with them instead of read again.
        self.recent: dict[str, deque[list[Any]]] = {}
        self.reads = SubscribeReads(self.last, self.recent)
        self.books = BookReplicas()

    async def register(self, target: BatchTarget, wait_seconds: float = 5.0) -> None:
        """Deliver to ``target`` from now on; returns once the subscription is live.

        If the channel layer is unreachable it returns after ``wait_seconds`` anyway: the
        feed keeps trying, and batches flow as soon as it succeeds.
        """
        self.targets.add(target)
        if getattr(target, "feed_key", None) is None:
            self.loose.add(target)
        if not self.subscription.running():
            self.ready.clear()
            self.subscription.ensure()
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

    async def dispatch(
        self, ticks: dict[str, Any], books: dict[str, Any] | None = None, trades: dict[str, Any] | None = None
    ) -> None:
        """Deliver one window's batch (``symbol -> [epoch, first_seq, last_seq, piece]``), and its
        book entries and trades to the streams that follow them: after the shared ticks frame
        for a group's members, with their ticks on the per-stream path."""
        self.windows += 1
        window = window_of(self.books, books, trades) if books or trades else None
        last = self.last
        # Symbols this batch does not simply continue (a gap, a new epoch, first sight).
        broken = set()
        for symbol, raw in ticks.items():
            seen = last.get(symbol)
            if seen is None or seen[0] != raw[BATCH_EPOCH] or seen[1] + 1 != raw[BATCH_FIRST_SEQ]:
                broken.add(symbol)
        if broken:
            for key in [k for k in self.groups if not broken.isdisjoint(k)]:
                for target in list(self.groups.pop(key)):
                    target.feed_key = None
                    target.leave_step(last)
                    self.loose.add(target)
        for symbol, raw in ticks.items():
            last[symbol] = (raw[BATCH_EPOCH], raw[BATCH_LAST_SEQ])
            kept = self.recent.get(symbol)
            if kept is None:
                kept = self.recent[symbol] = deque(maxlen=RECENT_WINDOWS)
            kept.append(raw)
        sent = ticks_sent = 0
        for key, members in list(self.groups.items()):
            pieces = []
            count = 0
            for symbol, raw in ticks.items():
                if symbol in key:
                    _epoch, first_seq, last_seq, piece = raw
                    pieces.append(piece)
                    count += last_seq - first_seq + 1
            # Every member gets the frame, even one detached while others are being sent
            # to: its positions were written out as of this batch.
            targets = list(members)
            text = ticks_frame(pieces) if pieces else None
            if text is None and not window:
                continue
            message = None
            for target in targets:
                try:
                    if text is not None:
                        send_text = target.send_text
                        if send_text is not None:
                            send_text(text)
                        else:
                            message = message or {"type": "websocket.send", "text": text}
                            await target.raw_send(message)
                    # A member that follows books gets its depth and trades after the shared ticks.
                    if window and target.follows_books:
                        await target.deliver_books(window)
                except Exception:
                    logger.debug("shared frame not delivered to a closing stream", exc_info=True)
            if text is not None:
                sent += len(targets)
                ticks_sent += count * len(targets)
        if sent:
            # Counted once per window, not per frame (a lock, and a file in multiprocess mode).
            self.shared_frames += sent
            metrics.FRAMES_SENT.labels("stream").inc(sent)
            metrics.TICKS_SENT.labels("stream").inc(ticks_sent)
        for target in list(self.loose):
            try:
                await target.deliver(ticks, window)
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
                await asyncio.sleep(LAYER_RETRY_SECONDS)
        self.ready.set()
        try:
            while True:
                message = await self.layer.receive(channel)
                ticks, books, trades = message.get("ticks"), message.get("books"), message.get("trades")
                if ticks or books or trades:
                    await self.dispatch(ticks or {}, books, trades)
        finally:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(MARKET_GROUP, channel)


class SymbolTarget(Protocol):
    """A single-symbol stream (``SymbolConsumer``), fed on the event loop."""

    async def deliver_symbol(
        self, entry: Sequence[Any] | None, message: dict[str, Any] | None, window: MarketWindow | None
    ) -> int:
        """Send what it has not seen of ``entry`` (all of it: ``message``) and the window's book
        frames it follows; the tick frames made (0 or 1)."""


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
        self.receiving = BackgroundTask(self._run)
        self._lock = asyncio.Lock()
        self.books = BookReplicas()

    async def register(self, symbol: str, target: SymbolTarget) -> None:
        """Deliver ``symbol``'s ticks to ``target`` from now on (returns once subscribed)."""
        self.targets.setdefault(symbol, {})[target] = None
        async with self._lock:
            if self.channel is None:
                self.channel = await self.layer.new_channel()
            if symbol not in self.joined:
                await self.layer.group_add(symbol_group(symbol), self.channel)
                self.joined.add(symbol)
            self.receiving.ensure()

    async def unregister(self, symbol: str, target: SymbolTarget) -> None:
        found = self.targets.get(symbol)
        if found is not None:
            found.pop(target, None)
            if not found:
                del self.targets[symbol]

    async def dispatch(
        self, symbol: str, entry: list[Any] | None, book: list[Any] | None = None, trades: list[Any] | None = None
    ) -> None:
        sent = 0
        # Built once: the same message for every stream in step (Daphne does not change it).
        message = None if entry is None else {"type": "websocket.send", "text": ticks_frame([entry[BATCH_PIECE]])}
        window = None
        if book is not None or trades is not None:
            window = window_of(
                self.books, {symbol: book} if book is not None else None, {symbol: trades} if trades else None
            )
        for target in list(self.targets.get(symbol, ())):
            try:
                sent += await target.deliver_symbol(entry, message, window)
            except Exception:
                logger.exception("symbol ticks not delivered to a stream")
        if sent and entry is not None:
            metrics.FRAMES_SENT.labels("symbol").inc(sent)
            metrics.TICKS_SENT.labels("symbol").inc(sent * (entry[BATCH_LAST_SEQ] - entry[BATCH_FIRST_SEQ] + 1))

    async def _run(self) -> None:
        channel = self.channel
        assert channel is not None
        async for message in layer_messages(self.layer, channel, "symbol feed"):
            symbol, entry = message.get("symbol"), message.get("entry")
            if symbol and (entry or "book" in message or "trades" in message):
                await self.dispatch(symbol, entry, message.get("book"), message.get("trades"))


def symbol_feed(layer: Any) -> SymbolFeed:
    """The single-symbol feed of the running event loop."""
    return services.get(SymbolFeed, layer)


def process_feed(layer: Any) -> MarketFeed:
    """The feed of the running event loop (Daphne runs one loop per process)."""
    return services.get(MarketFeed, layer)
