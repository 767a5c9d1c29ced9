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

import logging
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer, JsonWebsocketConsumer
from django.conf import settings

from dashboard.market import protocol
from dashboard.market.broadcast import CATALOG_GROUP, session_group, symbol_group, token_group, user_group
from dashboard.market.client import async_redis, sync_redis
from dashboard.market.protocol import CloseCode, ErrorCode, Ping, ProtocolError, Subscribe
from dashboard.market.store import aread_subscribe, read_subscribe
from dashboard.streams import catalog as catalogs
from dashboard.streams import frames, heartbeat
from dashboard.streams.feed import process_feed
from dashboard.streams.guard import ClientGuard, charge_reads, screen
from dashboard.streams.subscriptions import Subscriptions, subscription_frame
from ticker import metrics

logger = logging.getLogger(__name__)


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


class StreamConsumer(AsyncWebsocketConsumer):
    """Multi-symbol dashboard stream: subscribe/unsubscribe at run time, ticks per window."""

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
        if getattr(self, "feed", None) is not None:
            self.feed.unregister(self)

    async def send_heartbeat(self, frame: str) -> None:
        await self.send(text_data=frame)

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
        states = await aread_subscribe(async_redis(), todo, op.interval, since, max_missed=self.max_missed)
        frames = []
        # No await between reading the state and recording the positions: no batch can
        # slip in between, so nothing older is forwarded and nothing newer skipped.
        for symbol in todo:
            frame, epoch, seq = subscription_frame(
                states[symbol], op.since.get(symbol), self.catalog[symbol]["status"], op.interval
            )
            self.subs.add(symbol, epoch, seq)
            self.intervals[symbol] = op.interval
            frames.append(frame)
        await self.send(text_data=protocol.ack_frame(op.id, "subscribe", op.symbols))
        for frame in frames:
            await self.send(text_data=frame)

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
        for symbol in self.subs.symbols():
            if symbol not in self.catalog:
                self.subs.remove(symbol)
        await self.send(text_data=event["frame"])


class SymbolConsumer(JsonWebsocketConsumer):
    """Single-symbol stream, subscribed on connect to the symbol in its URL."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # The heartbeat hub runs on the event loop: it sends through the raw ASGI
        # callable instead of this consumer's thread-bound wrapper.
        self._asgi_send = send
        hub = heartbeat.hub()
        hub.register(self)
        try:
            await super().__call__(scope, receive, send)
        finally:
            hub.unregister(self)

    async def send_heartbeat(self, frame: str) -> None:
        # Only once the stream is open (accepted, subscribed).
        if getattr(self, "subs", None) is not None:
            await self._asgi_send({"type": "websocket.send", "text": frame})

    def websocket_connect(self, message: dict[str, Any]) -> None:
        # Channels joins ``self.groups`` before ``connect`` and leaves them after ``disconnect``;
        # the symbol's own group is joined in ``connect``, once the symbol is known valid.
        self.groups = [*_access_groups(self.scope), CATALOG_GROUP]
        super().websocket_connect(message)

    def connect(self) -> None:
        self.subs: Subscriptions | None = None
        self.symbol_group: str | None = None
        self.symbol = self.scope["url_route"]["kwargs"]["symbol"]
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
        self.symbol_group = symbol_group(self.symbol)
        async_to_sync(self.channel_layer.group_add)(self.symbol_group, self.channel_name)
        self.send(text_data=frames.hello(catalog))
        # Open from here on: client frames, heartbeats and group messages are served.
        self.subs = Subscriptions()
        since = frames.since_from_query(self.scope.get("query_string", b""), self.symbol)
        try:
            self._subscribe(Subscribe(id=None, symbols=(self.symbol,), since=since), ack=False)
        except (redis.RedisError, OSError) as exc:
            self.subs = None
            self.send(text_data=_unavailable(None, exc).frame())
            self.close(code=int(CloseCode.TRY_AGAIN_LATER))

    def disconnect(self, code: int) -> None:
        if self.symbol_group is not None:
            async_to_sync(self.channel_layer.group_discard)(self.symbol_group, self.channel_name)

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
        state = read_subscribe(sync_redis(), [self.symbol], op.interval, since, max_missed=max_missed)[self.symbol]
        frame, epoch, seq = subscription_frame(
            state, op.since.get(self.symbol), self.catalog[self.symbol]["status"], op.interval
        )
        self.subs.add(self.symbol, epoch, seq)
        if ack:
            self.send(text_data=protocol.ack_frame(op.id, "subscribe", op.symbols))
        self.send(text_data=frame)

    def symbol_ticks(self, event: dict[str, Any]) -> None:
        if self.subs is None:
            return
        epoch, first, last, piece = event["entry"]
        before = self.subs.ticks_accepted
        fresh = self.subs.accept(event["symbol"], epoch, first, last, piece)
        if fresh:
            self.send(text_data=protocol.ticks_frame([fresh]))
            metrics.FRAMES_SENT.labels("symbol").inc()
            metrics.TICKS_SENT.labels("symbol").inc(self.subs.ticks_accepted - before)
        if self.subs.take_resync():
            # A new epoch: a fresh snapshot of it.
            try:
                self._subscribe(Subscribe(id=None, symbols=(self.symbol,), interval=self.interval), ack=False)
            except (redis.RedisError, OSError) as exc:
                self.send(text_data=_unavailable(None, exc).frame())

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
