"""WebSocket consumers: thin shells around one ``StreamSession`` each.

The protocol (subscriptions, guard, catalog, the hold while a read is out, resume) lives
in ``dashboard.streams.session``; a consumer only waits in its own way. ``StreamConsumer``
(async, ``/ws/stream/``) serves the multi-symbol dashboard: every producer window comes
from its process's market feed (``dashboard.streams.feed``), and reads go through the
feed's shared reads. ``SymbolConsumer`` (sync, ``/ws/symbols/<SYM>/``) serves one symbol:
client frames and reads run on its thread, the symbol's ticks arrive on the event loop.
Each writes its session's outbox through one writer at a time, so frames leave in the
order the session put them. Who may connect at all is decided before either runs, by
``dashboard.streams.admission.StreamAdmission``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer, JsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from dashboard.market.broadcast import CATALOG_GROUP, session_group, token_group, user_group
from dashboard.market.client import async_redis, sync_redis
from dashboard.market.depth import MarketWindow
from dashboard.market.protocol import CloseCode, Limits
from dashboard.market.store import aread_subscribe, read_subscribe
from dashboard.streams import catalog as catalogs
from dashboard.streams import frames, heartbeat
from dashboard.streams.events import ProcessEvents, process_events
from dashboard.streams.feed import process_feed, symbol_feed
from dashboard.streams.outbox import SharedWriter
from dashboard.streams.session import Read, StreamSession
from ticker import metrics

logger = logging.getLogger(__name__)

# Frames written per event-loop turn: a dashboard's 50 snapshots are ~800 KB, and a crowd
# subscribing at once must not hold the loop away from live frames.
FRAMES_PER_TURN = 10
STORE_ERRORS = (redis.RedisError, OSError)


def _user_label(scope: dict[str, Any]) -> str:
    user = scope.get("user")
    return f"user {user.pk}" if user is not None and user.is_authenticated else "anonymous"


def _access_groups(scope: dict[str, Any]) -> list[str]:
    """Groups through which a logout (session) or a deactivation (user) closes this stream."""
    groups = [user_group(scope["user"].pk)]
    session = scope.get("session")
    if session is not None and session.session_key:
        groups.append(session_group(session.session_key))
    if scope.get("api_token_id") is not None:  # opened with an API token: revoking it closes the stream
        groups.append(token_group(scope["api_token_id"]))
    return groups


def _raw_send(send: Any) -> Any:
    """The server's own send callable under channels' wrappers (the session middleware's).

    Stream frames need none of what the wrappers do (a session save on HTTP responses).
    """
    while True:
        inner = getattr(getattr(send, "__self__", None), "real_send", None)
        if inner is None:
            return send
        send = inner


def text_sender(send: Any) -> Callable[[str], None] | None:
    """The connection's own ``send_text`` behind Daphne's ASGI ``send``, or ``None``.

    Daphne hands each application ``partial(Server.handle_reply, protocol)``; the protocol
    ``ticker.server`` builds (``ticker.slow_clients``) writes a text frame synchronously,
    without a coroutine and two dispatches per frame. Under any other server (the test
    communicator) frames keep the ASGI send. Duck-typed: importing the protocol's module
    here would import Twisted's reactor into every process that imports the consumers.
    """
    protocol = next(iter(getattr(send, "args", ())), None)
    return getattr(protocol, "send_text", None)


def _new_session(scope: dict[str, Any], limits: Limits, **options: Any) -> StreamSession:
    return StreamSession(
        limits,
        budget=scope["ticker.read_budget"],
        max_missed=settings.TICKER["MAX_RESUME_TICKS"],
        clock=time.monotonic,
        wall=frames.server_time,
        **options,
    )


def _log_close(scope: dict[str, Any], what: str, code: CloseCode) -> None:
    """A close the client earned (4400, 4429): logged, counted, and charged to its user."""
    logger.warning("closing %s of %s: %s", what, _user_label(scope), code.name)
    metrics.PROTOCOL_CLOSES.labels(str(int(code))).inc()
    scope["ticker.penalize"]()


def _log_read_failure(exc: Exception) -> None:
    """Any failed read is answered (``unavailable``): one never answered would hold the stream's ticks."""
    if isinstance(exc, STORE_ERRORS):
        logger.warning("subscribe failed, market data store unreachable: %r", exc)
    else:
        logger.error("subscribe read failed", exc_info=exc)


class StreamConsumer(AsyncWebsocketConsumer):
    """Multi-symbol dashboard stream: subscribe/unsubscribe at run time, ticks per window.

    While in step with its process's feed it is in one of the feed's groups, which get
    each window's frame built once (``dashboard.streams.feed``); anything that changes
    what it follows takes it out of the group first (the session's ``on_change``).
    """

    # Not a configured layer: channels opens no channel of its own for the connection (a
    # queue and a waiting task per dashboard); its groups' messages come through the
    # process's one channel (``dashboard.streams.events``).
    channel_layer_alias = "ticker.process-events"
    feed_key: frozenset[str] | None = None
    feed: Any = None
    session: StreamSession | None = None
    events: ProcessEvents | None = None
    # Whether it follows any symbol's depth or trades: asked by the feed of every member per
    # window, so kept as a plain attribute, set after whatever can change it (a client's
    # frame, a catalog change).
    follows_books = False
    send_text: Callable[[str], None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Every frame goes straight to the server, shared tick frames too (``MarketFeed``).
        self.raw_send = _raw_send(send)
        self.send_text = text_sender(self.raw_send)
        self._writing = False
        self._close_sent = False
        self._reads: set[asyncio.Task[None]] = set()
        await super().__call__(scope, receive, send)

    async def connect(self) -> None:
        layer = get_channel_layer()
        # Joined before the accept, as channels joins a consumer's groups: a logout while
        # the stream opens still closes it.
        events = process_events(layer)
        self.event_groups = [*_access_groups(self.scope), CATALOG_GROUP]
        await events.join(self, self.event_groups)
        self.events = events
        self.frames_sent = metrics.FRAMES_SENT.labels("stream")
        self.ticks_sent = metrics.TICKS_SENT.labels("stream")
        await self.accept()
        feed = process_feed(layer)
        self.session = _new_session(self.scope, frames.limits(), shared=feed.reads, on_change=self._leave_group)
        self.feed = feed
        await feed.register(self)
        catalog = await catalogs.acurrent()
        self.session.open(catalog, frames.hello(catalog))
        await self._write()
        heartbeat.hub().register(self)

    async def disconnect(self, code: int) -> None:
        heartbeat.hub().unregister(self)
        if self.events is not None:
            self.events.leave(self, self.event_groups)
        if self.feed is not None:
            self.feed.unregister(self)
        for task in self._reads:
            task.cancel()

    def _leave_group(self) -> None:
        if self.feed is not None:
            self.feed.detach(self)

    # --- what the feed asks (``feed.SharedTarget``) -----------------------------------

    def steppable(self) -> frozenset[str] | None:
        """Its symbols, when it may share frames now (nothing held, pending or unsent)."""
        if self._writing or self.session is None:
            return None
        return self.session.steppable()

    def in_step(self, last: dict[str, tuple[str, int]]) -> bool:
        return self.session is not None and self.session.subs.matches(last)

    def leave_step(self, last: dict[str, tuple[str, int]]) -> None:
        if self.session is not None:
            self.session.subs.catch_up(last)

    async def deliver(self, ticks: dict[str, Any], window: MarketWindow | None = None) -> None:
        """A market batch from this process's feed (``MarketFeed``), on the per-stream path."""
        session = self.session
        if session is None:
            return
        ticks_sent = session.batch(ticks, None, window)
        if ticks_sent:
            self.frames_sent.inc()
            self.ticks_sent.inc(ticks_sent)
        if session.outbox:
            await self._write()
        if session.has_reads():  # a series changed epoch: its snapshot is read beside the feed
            task = asyncio.get_running_loop().create_task(self._read())
            self._reads.add(task)
            task.add_done_callback(self._reads.discard)

    async def deliver_books(self, window: MarketWindow) -> None:
        """Depth and trades of a window whose ticks went out in the feed's shared frame."""
        session = self.session
        if session is not None:
            session.book_window(window)
            if session.outbox:
                await self._write()

    async def send_heartbeat(self, frame: str) -> None:
        if self.send_text is not None:
            self.send_text(frame)
        else:
            await self.raw_send({"type": "websocket.send", "text": frame})

    # --- client frames and channel-layer events ---------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        session = self.session
        if session is None:
            return
        closing = session.client_frame(text_data, bytes_data)
        self.follows_books = bool(session.books)
        if closing is not None:
            _log_close(self.scope, "stream", closing)
        await self._write()
        if session.has_reads():
            await self._read()

    async def access_revoked(self, event: dict[str, Any]) -> None:
        logger.info("closing stream of %s: %s", _user_label(self.scope), event["reason"])
        await self.close(code=int(CloseCode.NOT_AUTHENTICATED))

    async def alert_fired(self, event: dict[str, Any]) -> None:
        """One of this user's price alerts fired: the producer built the frame."""
        if self.session is not None:
            self.session.alert(event["frame"])
            await self._write()

    async def catalog_changed(self, event: dict[str, Any]) -> None:
        if self.session is not None:
            self.session.catalog_changed(event["catalog"], event["frame"])
            self.follows_books = bool(self.session.books)
            await self._write()

    # --- waiting, the async way --------------------------------------------------------

    async def _read(self) -> None:
        """Make the reads the session asks for, through the feed's shared reads."""
        session = self.session
        assert session is not None
        max_missed = session.max_missed
        for read in session.take_reads():

            async def reader(symbols: list[str], since: dict[str, tuple[str, int]], read: Read = read) -> Any:
                return await aread_subscribe(async_redis(), symbols, read.interval, since, max_missed=max_missed)

            try:
                states = await self.feed.reads.read(
                    reader, list(read.symbols), read.interval, read.since_keys(), max_missed
                )
            except Exception as exc:
                _log_read_failure(exc)
                session.read_failed(read)
            else:
                session.read_done(read, states)
        await self._write()

    async def _write(self) -> None:
        """Send the session's outbox; one writer at a time keeps the order."""
        session = self.session
        if self._writing or session is None:
            return
        self._writing = True
        try:
            outbox, written, send_text = session.outbox, 0, self.send_text
            while outbox:
                if send_text is not None:
                    send_text(outbox.pop(0))
                else:
                    await self.raw_send({"type": "websocket.send", "text": outbox.pop(0)})
                written += 1
                if written % FRAMES_PER_TURN == 0:
                    await asyncio.sleep(0)
        finally:
            self._writing = False
        frames_sent, ticks_sent = session.take_sent()
        if frames_sent:
            self.frames_sent.inc(frames_sent)
            self.ticks_sent.inc(ticks_sent)
        if session.close_code is not None and not self._close_sent:
            self._close_sent = True
            await self.close(code=int(session.close_code))


class SymbolConsumer(JsonWebsocketConsumer):
    """Single-symbol stream, subscribed on connect to the symbol in its URL.

    Its ticks come from the process's symbol feed (``dashboard.streams.feed.SymbolFeed``)
    on the event loop, straight to the socket (``deliver_symbol``): no channel-layer
    message and no hop to this consumer's thread per tick. Client frames, reads and the
    access/catalog groups are handled on its thread. The session is driven under
    ``_lock`` from both sides; the lock is never held across a send or a read.
    """

    feed: Any = None
    session: StreamSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # The heartbeat hub and the symbol feed run on the event loop: they send through
        # the raw ASGI callable instead of this consumer's thread-bound wrapper.
        self._asgi_send = _raw_send(send)
        self._lock = threading.Lock()
        self._resync_asked = False
        hub = heartbeat.hub()
        hub.register(self)
        try:
            await super().__call__(scope, receive, send)
        finally:
            hub.unregister(self)
            if self.feed is not None:
                await self.feed.unregister(self.symbol, self)

    async def send_heartbeat(self, frame: str) -> None:
        # Only once the stream is open (accepted, its symbol listed).
        if self.session is not None and self.session.serving:
            await self._asgi_send({"type": "websocket.send", "text": frame})

    def websocket_connect(self, message: dict[str, Any]) -> None:
        # Channels joins ``self.groups`` before ``connect`` and leaves them after ``disconnect``;
        # the symbol's feed is joined in ``connect``, once the symbol is known valid.
        self.groups = [*_access_groups(self.scope), CATALOG_GROUP]
        super().websocket_connect(message)

    def connect(self) -> None:
        self.symbol = self.scope["url_route"]["kwargs"]["symbol"]
        self.accept()
        catalog = catalogs.current()
        session = _new_session(self.scope, frames.limits(), only=self.symbol)
        since = frames.since_from_query(self.scope.get("query_string", b""), self.symbol)
        with self._lock:
            session.open(catalog, frames.hello(catalog), since)
            self.session = session
            self._writer = SharedWriter(session, self._lock)
        if session.serving:
            # Joined before the read: the ticks that arrive meanwhile are held, not lost.
            async_to_sync(self._register)()
        self._drive(lambda: None)

    async def _register(self) -> None:
        feed = symbol_feed(self.channel_layer)
        await feed.register(self.symbol, self)
        self.feed = feed

    def disconnect(self, code: int) -> None:
        with self._lock:
            if self.session is not None:
                self.session.disconnected()

    async def deliver_symbol(
        self, entry: Sequence[Any] | None, message: dict[str, Any] | None, window: MarketWindow | None = None
    ) -> int:
        """A window of this stream's symbol (event loop); ``message`` sends all its ticks. Tick frames made: 0 or 1."""
        session = self.session
        if session is None:
            return 0
        with self._lock:
            text = message["text"] if message is not None else None
            made = 1 if session.batch_one(self.symbol, entry, text, window) else 0
            first = self._writer.claim()
            resync = session.has_reads() and not self._resync_asked
            if resync:
                self._resync_asked = True
        if first is not None:
            await self._writer.awrite_from(first, self._asgi_send, message)
        if resync:  # a new epoch: the snapshot is read on the consumer's thread
            await self.channel_layer.send(self.channel_name, {"type": "symbol.resync"})
        return made

    def symbol_resync(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._resync_asked = False
        self._drive(lambda: None)

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        assert self.session is not None
        closing = self._drive(lambda: self.session.client_frame(text_data, bytes_data))  # type: ignore[union-attr]
        if closing is not None:
            _log_close(self.scope, f"{self.symbol} stream", closing)

    def access_revoked(self, event: dict[str, Any]) -> None:
        logger.info("closing %s stream of %s: %s", self.symbol, _user_label(self.scope), event["reason"])
        self.close(code=int(CloseCode.NOT_AUTHENTICATED))

    def alert_fired(self, event: dict[str, Any]) -> None:
        """One of this user's price alerts fired: the producer built the frame."""
        self._drive(lambda: self.session.alert(event["frame"]))  # type: ignore[union-attr]

    def catalog_changed(self, event: dict[str, Any]) -> None:
        self._drive(lambda: self.session.catalog_changed(event["catalog"], event["frame"]))  # type: ignore[union-attr]

    # --- waiting, the thread's way -----------------------------------------------------

    def _drive(self, event: Callable[[], Any]) -> Any:
        """Feed the session ``event`` on this thread, then make its reads and write its outbox."""
        session = self.session
        assert session is not None
        with self._lock:
            result = event()
            reads = session.take_reads()
        self._write()
        while reads:
            for read in reads:
                self._read(session, read)
                self._write()
            with self._lock:
                reads = session.take_reads()
        with self._lock:
            frames_sent, ticks_sent = session.take_sent()
        if frames_sent:
            metrics.FRAMES_SENT.labels("symbol").inc(frames_sent)
            metrics.TICKS_SENT.labels("symbol").inc(ticks_sent)
        return result

    def _read(self, session: StreamSession, read: Read) -> None:
        try:
            states = read_subscribe(
                sync_redis(), list(read.symbols), read.interval, read.since_keys(), max_missed=session.max_missed
            )
        except Exception as exc:
            _log_read_failure(exc)
            with self._lock:
                session.read_failed(read)
        else:
            with self._lock:
                session.read_done(read, states)

    def _write(self) -> None:
        """Write the outbox from this thread, unless the event loop is writing it."""
        self._writer.write(self.base_send)
