"""WebSocket consumers: thin translators between sockets and ``dashboard.market.protocol``.

``StreamConsumer`` (async, ``/ws/stream/``) serves the multi-symbol dashboard: it gets
every producer window from its process's market feed (one market-group subscription per
process, ``dashboard.streams.feed``) and forwards the pre-encoded pieces of the symbols
its client subscribed to. ``SymbolConsumer`` (sync, ``/ws/symbols/<SYM>/``)
serves one symbol from that symbol's group. Both screen client frames the same way
(``guard.screen``) and answer (re)subscribes the same way
(``subscriptions.subscription_frame``). Who may connect at all is decided before either
runs, by ``dashboard.streams.admission.StreamAdmission``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer, JsonWebsocketConsumer
from django.conf import settings

from dashboard.market import protocol
from dashboard.market.broadcast import CATALOG_GROUP, session_group, token_group, user_group
from dashboard.market.client import async_redis, sync_redis
from dashboard.market.protocol import CloseCode, ErrorCode, Ping, ProtocolError, Subscribe
from dashboard.market.store import aread_subscribe, read_subscribe
from dashboard.streams import catalog as catalogs
from dashboard.streams import frames, heartbeat
from dashboard.streams.feed import process_feed, symbol_feed
from dashboard.streams.guard import ClientGuard, charge_reads, screen
from dashboard.streams.subscriptions import Subscriptions, subscription_frame
from ticker import metrics

logger = logging.getLogger(__name__)

# Subscribe answers written per event-loop turn (see ``StreamConsumer._subscribe``).
SNAPSHOTS_PER_TURN = 10


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


def _unavailable(op_id: int | str | None, exc: Exception) -> ProtocolError:
    logger.warning("subscribe failed, market data store unreachable: %r", exc)
    return ProtocolError(ErrorCode.UNAVAILABLE, "market data temporarily unavailable; retry shortly", op_id)


def _catalog_index(catalog: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["symbol"]: entry for entry in catalog}


def _raw_send(send: Any) -> Any:
    """The server's own send callable under channels' wrappers (the session middleware's).

    Tick frames need none of what the wrappers do (a session save on HTTP responses).
    """
    while True:
        inner = getattr(getattr(send, "__self__", None), "real_send", None)
        if inner is None:
            return send
        send = inner


class StreamConsumer(AsyncWebsocketConsumer):
    """Multi-symbol dashboard stream: subscribe/unsubscribe at run time, ticks per window.

    While in step with its process's feed it is in one of the feed's groups, which get
    each window's frame built once (``dashboard.streams.feed``); anything that changes
    what it follows takes it out of the group first (``feed.detach``).
    """

    feed_key: frozenset[str] | None = None
    feed: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Shared tick frames go straight to the server (``MarketFeed``).
        self.raw_send = _raw_send(send)
        await super().__call__(scope, receive, send)

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        # Channels joins ``self.groups`` before ``connect`` and leaves them after ``disconnect``.
        self.groups = [*_access_groups(self.scope), CATALOG_GROUP]
        await super().websocket_connect(message)

    async def connect(self) -> None:
        self.frames_sent = metrics.FRAMES_SENT.labels("stream")
        self.ticks_sent = metrics.TICKS_SENT.labels("stream")
        self.limits = frames.limits()
        self.guard = ClientGuard(self.limits)
        self.max_missed = settings.TICKER["MAX_RESUME_TICKS"]
        self.subs = Subscriptions()
        self.intervals: dict[str, str] = {}
        # Market batches arrive through the process's feed, not this consumer's channel:
        # held while a (re)subscribe reads Redis, so none is lost or forwarded early.
        self._holds = 0
        self._draining = False
        self._held: list[dict[str, Any]] = []
        await self.accept()
        self.feed = process_feed(self.channel_layer)
        await self.feed.register(self)
        catalog = await catalogs.acurrent()
        self.catalog = _catalog_index(catalog)
        await self.send(text_data=frames.hello(catalog))
        heartbeat.hub().register(self)

    async def disconnect(self, code: int) -> None:
        heartbeat.hub().unregister(self)
        if self.feed is not None:
            self.feed.unregister(self)

    def steppable(self) -> frozenset[str] | None:
        """Its symbols, when it may share frames now (nothing held, nothing pending)."""
        if self._holds or self._draining or self._held:
            return None
        return self.subs.key()

    def in_step(self, last: dict[str, tuple[str, int]]) -> bool:
        return self.subs.matches(last)

    def leave_step(self, last: dict[str, tuple[str, int]]) -> None:
        self.subs.catch_up(last)

    async def send_heartbeat(self, frame: str) -> None:
        await self.raw_send({"type": "websocket.send", "text": frame})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        screened = screen(self.guard, self.limits, text_data, bytes_data)
        for frame in screened.replies:
            await self.send(text_data=frame)
        if screened.close is not None:
            logger.warning("closing stream of %s: %s", _user_label(self.scope), screened.close.name)
            metrics.PROTOCOL_CLOSES.labels(str(int(screened.close))).inc()
            await self.close(code=int(screened.close))
            return
        op = screened.op
        if op is not None and not isinstance(op, Ping) and self.feed is not None:
            self.feed.detach(self)  # its own positions from here on
        try:
            if isinstance(op, Ping):
                await self.send(text_data=protocol.pong_frame(op.id, frames.server_time()))
            elif isinstance(op, Subscribe):
                try:
                    await self._holding(self._subscribe(op))
                except (redis.RedisError, OSError) as exc:
                    raise _unavailable(op.id, exc) from None
            elif op is not None:
                removed = [s for s in op.symbols if self.subs.remove(s)]
                for symbol in removed:
                    self.intervals.pop(symbol, None)
                await self.send(text_data=protocol.ack_frame(op.id, "unsubscribe", removed))
        except ProtocolError as err:
            await self.send(text_data=err.frame())

    async def _subscribe(self, op: Subscribe) -> None:
        unknown = [s for s in op.symbols if s not in self.catalog]
        if unknown:
            raise ProtocolError(ErrorCode.UNKNOWN_SYMBOL, f"unknown or disabled symbols: {', '.join(unknown)}", op.id)
        # New symbols, and subscribed ones the client asks to resume (it saw a gap).
        todo = [s for s in op.symbols if s not in self.subs or s in op.since]
        if len(set(self.subs.symbols()) | set(todo)) > self.limits.max_symbols:
            raise ProtocolError(
                ErrorCode.TOO_MANY_SYMBOLS, f"at most {self.limits.max_symbols} symbols per connection", op.id
            )
        if todo:
            charge_reads(self.scope["ticker.read_budget"], len(todo), op.id)
        since = {s: (p.epoch, p.seq) for s, p in op.since.items() if s in todo}
        interval, max_missed = op.interval, self.max_missed

        async def read(symbols: list[str], since: dict[str, tuple[str, int]]) -> dict[str, Any]:
            return await aread_subscribe(async_redis(), symbols, interval, since, max_missed=max_missed)

        # Shared with the process's other streams while no newer batch has been sent (``SubscribeReads``).
        reads = self.feed.reads
        states = await reads.read(read, todo, interval, since, max_missed)
        frames = []
        # No await between reading the state and recording the positions: no batch can
        # slip in between, so nothing older is forwarded and nothing newer skipped.
        for symbol in todo:
            state, status, position = states[symbol], self.catalog[symbol]["status"], op.since.get(symbol)
            frame, epoch, seq = reads.frame(
                symbol,
                interval,
                since.get(symbol),
                max_missed,
                state,
                status,
                lambda state=state, position=position, status=status: subscription_frame(
                    state, position, status, interval
                ),
            )
            frames.append(frame)
            # A shared read may be a little older than what the feed already sent: the pieces
            # sent since complete it (as if they had arrived right after it).
            behind = reads.behind(symbol, epoch, seq)
            if behind is not None and behind[0]:
                frames.append(protocol.ticks_frame(behind[0]))
                seq = behind[1]
            self.subs.add(symbol, epoch, seq)
            self.intervals[symbol] = op.interval
        await self.send(text_data=protocol.ack_frame(op.id, "subscribe", op.symbols))
        for i, frame in enumerate(frames):
            if i % SNAPSHOTS_PER_TURN == SNAPSHOTS_PER_TURN - 1:
                # A dashboard's 50 snapshots are ~800 KB: written a few at a time, so that a
                # crowd subscribing at once does not hold the loop away from live frames.
                await asyncio.sleep(0)
            await self.raw_send({"type": "websocket.send", "text": frame})  # past channels' wrappers, as ticks go

    async def deliver(self, ticks: dict[str, Any]) -> None:
        """A market batch from this process's feed (``MarketFeed``)."""
        if self._holds or self._draining:
            self._held.append(ticks)
        else:
            await self._forward(ticks)

    async def _forward(self, ticks: dict[str, Any]) -> None:
        before = self.subs.ticks_accepted
        pieces = self.subs.select(ticks)
        if pieces:
            await self.send(text_data=protocol.ticks_frame(pieces))
            self.frames_sent.inc()
            self.ticks_sent.inc(self.subs.ticks_accepted - before)
        resync = self.subs.take_resync()
        if resync:
            await self._holding(self._resnapshot(resync))

    async def _holding(self, work: Any) -> None:
        """Run ``work`` with batches held, then forward the held ones in order."""
        self._holds += 1
        try:
            await work
        finally:
            self._holds -= 1
            # Also after a refused subscribe: what was held still goes out, in order.
            if self._holds == 0 and not self._draining:
                self._draining = True
                try:
                    while self._held:
                        await self._forward(self._held.pop(0))
                finally:
                    self._draining = False

    async def _resnapshot(self, symbols: list[str]) -> None:
        """A series changed epoch: the client gets a fresh snapshot of it."""
        for symbol in symbols:
            if symbol in self.subs and symbol in self.catalog:
                interval = self.intervals.get(symbol, protocol.DEFAULT_INTERVAL)
                state = (await aread_subscribe(async_redis(), [symbol], interval, {}))[symbol]
                frame, epoch, seq = subscription_frame(state, None, self.catalog[symbol]["status"], interval)
                self.subs.add(symbol, epoch, seq)
                await self.send(text_data=frame)

    async def access_revoked(self, event: dict[str, Any]) -> None:
        logger.info("closing stream of %s: %s", _user_label(self.scope), event["reason"])
        await self.close(code=int(CloseCode.NOT_AUTHENTICATED))

    async def alert_fired(self, event: dict[str, Any]) -> None:
        """One of this user's price alerts fired: the producer built the frame."""
        await self.send(text_data=event["frame"])

    async def catalog_changed(self, event: dict[str, Any]) -> None:
        self.catalog = _catalog_index(event["catalog"])
        if self.feed is not None:
            self.feed.detach(self)
        for symbol in self.subs.symbols():
            if symbol not in self.catalog:
                self.subs.remove(symbol)
        await self.send(text_data=event["frame"])


class SymbolConsumer(JsonWebsocketConsumer):
    """Single-symbol stream, subscribed on connect to the symbol in its URL.

    Its ticks come from the process's symbol feed (``dashboard.streams.feed.SymbolFeed``)
    on the event loop, straight to the socket (``deliver_symbol``): no channel-layer
    message and no hop to this consumer's thread per tick. Client frames, subscribes and
    the access/catalog groups are handled on its thread as before. While a (re)subscribe
    reads Redis on the thread, arriving ticks are held (under ``_lock``, which is never
    held across a send) and forwarded in order once its frame is out.
    """

    feed: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # The heartbeat hub and the symbol feed run on the event loop: they send through
        # the raw ASGI callable instead of this consumer's thread-bound wrapper.
        self._asgi_send = _raw_send(send)
        self._lock = threading.Lock()
        self._holds = 0
        self._held: list[list[Any]] = []
        self._resync_asked = False
        self._open = False
        hub = heartbeat.hub()
        hub.register(self)
        try:
            await super().__call__(scope, receive, send)
        finally:
            hub.unregister(self)
            if self.feed is not None:
                await self.feed.unregister(self.symbol, self)

    async def send_heartbeat(self, frame: str) -> None:
        # Only once the stream is open (accepted, subscribed).
        if self._open:
            await self._asgi_send({"type": "websocket.send", "text": frame})

    def websocket_connect(self, message: dict[str, Any]) -> None:
        # Channels joins ``self.groups`` before ``connect`` and leaves them after ``disconnect``;
        # the symbol's feed is joined in ``connect``, once the symbol is known valid.
        self.groups = [*_access_groups(self.scope), CATALOG_GROUP]
        super().websocket_connect(message)

    def connect(self) -> None:
        self.subs: Subscriptions | None = None
        self.symbol = self.scope["url_route"]["kwargs"]["symbol"]
        self.interval = protocol.DEFAULT_INTERVAL
        self.accept()
        catalog = catalogs.current()
        self.catalog = _catalog_index(catalog)
        if self.symbol not in self.catalog:
            message = f"unknown or disabled symbol: {self.symbol[:20]}"
            self.send(text_data=protocol.error_frame(ErrorCode.UNKNOWN_SYMBOL, message))
            self.close(code=int(CloseCode.POLICY))
            return
        self.limits = frames.limits()
        self.guard = ClientGuard(self.limits)
        self.subs = Subscriptions()
        # Ticks from the feed are held until the subscribe's frame is out.
        self._hold()
        try:
            async_to_sync(self._register)()
            self.send(text_data=frames.hello(catalog))
            # Open from here on: client frames, heartbeats and ticks are served.
            self._open = True
            since = frames.since_from_query(self.scope.get("query_string", b""), self.symbol)
            try:
                self._subscribe(Subscribe(id=None, symbols=(self.symbol,), since=since), ack=False)
            except (redis.RedisError, OSError) as exc:
                self.subs = None
                self._open = False
                self.send(text_data=_unavailable(None, exc).frame())
                self.close(code=int(CloseCode.TRY_AGAIN_LATER))
        finally:
            self._release()

    async def _register(self) -> None:
        feed = symbol_feed(self.channel_layer)
        await feed.register(self.symbol, self)
        self.feed = feed

    def disconnect(self, code: int) -> None:
        self._open = False

    def _hold(self) -> None:
        with self._lock:
            self._holds += 1

    def _release(self) -> None:
        """End a hold; the outermost forwards what was held meanwhile, in order."""
        while True:
            with self._lock:
                if self._holds > 1 or not self._held:
                    self._holds -= 1
                    return
                entry = self._held.pop(0)
            self._forward(entry)

    def _accept(self, entry: list[Any]) -> tuple[str | None, bool]:
        """The part of ``entry`` the client has not seen, and whether a resync is due (locked)."""
        subs = self.subs
        if subs is None:
            return None, False
        epoch, first, last, piece = entry
        fresh = subs.accept(self.symbol, epoch, first, last, piece)
        return fresh, bool(subs.take_resync())

    def _forward(self, entry: list[Any]) -> None:
        """A held entry, on this consumer's thread."""
        with self._lock:
            fresh, resync = self._accept(entry)
        if fresh:
            self.send(text_data=protocol.ticks_frame([fresh]))
            metrics.FRAMES_SENT.labels("symbol").inc()
        if resync:
            self._resnapshot()

    async def deliver_symbol(self, entry: list[Any], message: dict[str, Any]) -> int:
        """Ticks of this stream's symbol from the process's feed (event loop); ``message`` sends them all."""
        if not self._open:
            return 0
        with self._lock:
            if self._holds:
                self._held.append(entry)
                return 0
            fresh, resync = self._accept(entry)
        sent = 0
        if fresh:
            if fresh is not entry[3]:
                message = {"type": "websocket.send", "text": protocol.ticks_frame([fresh])}
            await self._asgi_send(message)
            sent = 1
        if resync and not self._resync_asked:
            # A new epoch: the snapshot is read on the consumer's thread.
            self._resync_asked = True
            await self.channel_layer.send(self.channel_name, {"type": "symbol.resync"})
        return sent

    def symbol_resync(self, event: dict[str, Any]) -> None:
        self._resync_asked = False
        if self.subs is not None:
            self._resnapshot()

    def _resnapshot(self) -> None:
        try:
            self._subscribe(Subscribe(id=None, symbols=(self.symbol,), interval=self.interval), ack=False)
        except (redis.RedisError, OSError) as exc:
            self.send(text_data=_unavailable(None, exc).frame())

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.subs is None:
            return  # refused at connect; the close is on its way
        screened = screen(self.guard, self.limits, text_data, bytes_data)
        for frame in screened.replies:
            self.send(text_data=frame)
        if screened.close is not None:
            logger.warning("closing %s stream of %s: %s", self.symbol, _user_label(self.scope), screened.close.name)
            metrics.PROTOCOL_CLOSES.labels(str(int(screened.close))).inc()
            self.close(code=int(screened.close))
            return
        op = screened.op
        try:
            if isinstance(op, Ping):
                self.send(text_data=protocol.pong_frame(op.id, frames.server_time()))
                return
            if op is None:
                return
            others = [s for s in op.symbols if s != self.symbol]
            if others:
                message = f"this stream serves {self.symbol} only; use /ws/stream/ for others"
                raise ProtocolError(ErrorCode.FORBIDDEN, message, op.id)
            if isinstance(op, Subscribe):
                charge_reads(self.scope["ticker.read_budget"], 1, op.id)
                try:
                    self._subscribe(op, ack=True)
                except (redis.RedisError, OSError) as exc:
                    raise _unavailable(op.id, exc) from None
            else:
                with self._lock:
                    removed = [s for s in op.symbols if self.subs.remove(s)]
                self.send(text_data=protocol.ack_frame(op.id, "unsubscribe", removed))
        except ProtocolError as err:
            self.send(text_data=err.frame())

    def _subscribe(self, op: Subscribe, *, ack: bool) -> None:
        if self.symbol not in self.catalog:
            raise ProtocolError(ErrorCode.UNKNOWN_SYMBOL, f"{self.symbol} is no longer listed", op.id)
        self.interval = op.interval
        since = {s: (p.epoch, p.seq) for s, p in op.since.items() if s == self.symbol}
        max_missed = settings.TICKER["MAX_RESUME_TICKS"]
        self._hold()
        try:
            state = read_subscribe(sync_redis(), [self.symbol], op.interval, since, max_missed=max_missed)[self.symbol]
            frame, epoch, seq = subscription_frame(
                state, op.since.get(self.symbol), self.catalog[self.symbol]["status"], op.interval
            )
            with self._lock:
                assert self.subs is not None
                self.subs.add(self.symbol, epoch, seq)
            if ack:
                self.send(text_data=protocol.ack_frame(op.id, "subscribe", op.symbols))
            self.send(text_data=frame)
        finally:
            self._release()

    def access_revoked(self, event: dict[str, Any]) -> None:
        logger.info("closing %s stream of %s: %s", self.symbol, _user_label(self.scope), event["reason"])
        self.close(code=int(CloseCode.NOT_AUTHENTICATED))

    def alert_fired(self, event: dict[str, Any]) -> None:
        """One of this user's price alerts fired: the producer built the frame."""
        if self.subs is not None:
            self.send(text_data=event["frame"])

    def catalog_changed(self, event: dict[str, Any]) -> None:
        if self.subs is None:
            return  # refused at connect
        self.catalog = _catalog_index(event["catalog"])
        self.send(text_data=event["frame"])
