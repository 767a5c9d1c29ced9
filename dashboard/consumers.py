"""WebSocket consumers: thin translators between sockets and ``dashboard.protocol``.

``StreamConsumer`` (async, ``/ws/stream/``) serves the multi-symbol dashboard: it joins
the market group once and forwards, per producer window, the pre-encoded pieces of
the symbols its client subscribed to. ``SymbolConsumer`` (sync, ``/ws/symbols/<SYM>/``)
serves one symbol from that symbol's group. Both refuse sockets without an
authenticated session with close code 4401.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer, JsonWebsocketConsumer

from dashboard import heartbeat, protocol, streaming
from dashboard.catalog import catalog_entries
from dashboard.protocol import CloseCode, ErrorCode, Ping, ProtocolError, Subscribe, Subscriptions, Unsubscribe
from workers.broadcast import CATALOG_GROUP, MARKET_GROUP, symbol_group
from workers.market_store import aread_snapshots, read_snapshots

logger = logging.getLogger(__name__)

# Handlers on the streaming path touch no database, so they skip channels' per-message
# database-connection cleanup (a worker-thread hop on every message since channels 4.2).
_STREAMING_TYPES = frozenset({"market.batch"})


def _is_authenticated(scope: dict[str, Any]) -> bool:
    user = scope.get("user")
    return bool(user is not None and user.is_authenticated)


def _catalog_index(catalog: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["symbol"]: entry for entry in catalog}


class StreamConsumer(AsyncWebsocketConsumer):
    """Multi-symbol dashboard stream: subscribe/unsubscribe at run time, ticks per window."""

    async def connect(self) -> None:
        self.joined: list[str] = []
        await self.accept()
        if not _is_authenticated(self.scope):
            await self.close(code=int(CloseCode.NOT_AUTHENTICATED))
            return
        self.limits = streaming.limits()
        self.subs = Subscriptions()
        for group in (CATALOG_GROUP, MARKET_GROUP):
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
        catalog = await database_sync_to_async(catalog_entries)()
        self.catalog = _catalog_index(catalog)
        await self.send(text_data=streaming.hello(catalog))
        heartbeat.hub().register(self)

    async def disconnect(self, code: int) -> None:
        heartbeat.hub().unregister(self)
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def send_heartbeat(self, frame: str) -> None:
        await self.send(text_data=frame)

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] in _STREAMING_TYPES:
            await self.market_batch(message)
        else:
            await super().dispatch(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            op = protocol.parse_client_frame(text_data, bytes_data, limits=self.limits)
            if isinstance(op, Ping):
                await self.send(text_data=protocol.pong_frame(op.id, streaming.server_time()))
            elif isinstance(op, Subscribe):
                await self._subscribe(op)
            elif isinstance(op, Unsubscribe):
                removed = [s for s in op.symbols if self.subs.remove(s)]
                await self.send(text_data=protocol.ack_frame(op.id, "unsubscribe", removed))
        except ProtocolError as err:
            await self.send(text_data=err.frame())

    async def _subscribe(self, op: Subscribe) -> None:
        unknown = [s for s in op.symbols if s not in self.catalog]
        if unknown:
            raise ProtocolError(ErrorCode.UNKNOWN_SYMBOL, f"unknown or disabled symbols: {', '.join(unknown)}", op.id)
        new = [s for s in op.symbols if s not in self.subs]
        if len(self.subs) + len(new) > self.limits.max_symbols:
            raise ProtocolError(
                ErrorCode.TOO_MANY_SYMBOLS, f"at most {self.limits.max_symbols} symbols per connection", op.id
            )
        snapshots = await aread_snapshots(streaming.async_redis(), new, op.interval) if new else {}
        # Positions are set before any await that could let a batch in, so nothing
        # older than the snapshot is ever forwarded and nothing newer is skipped.
        for symbol in new:
            snap = snapshots[symbol]
            self.subs.add(symbol, snap.epoch, snap.seq)
        await self.send(text_data=protocol.ack_frame(op.id, "subscribe", op.symbols))
        for symbol in new:
            await self.send(
                text_data=streaming.snapshot(snapshots[symbol], self.catalog[symbol]["status"], op.interval)
            )

    async def market_batch(self, event: dict[str, Any]) -> None:
        pieces = self.subs.select(event["ticks"])
        if pieces:
            await self.send(text_data=protocol.ticks_frame(pieces))

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
        # Only once the stream is open (accepted, authenticated, subscribed).
        if getattr(self, "subs", None) is not None:
            await self._asgi_send({"type": "websocket.send", "text": frame})

    def connect(self) -> None:
        self.joined: list[str] = []
        self.accept()
        if not _is_authenticated(self.scope):
            self.close(code=int(CloseCode.NOT_AUTHENTICATED))
            return
        self.limits = streaming.limits()
        self.subs = Subscriptions()
        self.symbol = self.scope["url_route"]["kwargs"]["symbol"]
        catalog = catalog_entries()
        self.catalog = _catalog_index(catalog)
        if self.symbol not in self.catalog:
            self.send(
                text_data=protocol.error_frame(
                    ErrorCode.UNKNOWN_SYMBOL, f"unknown or disabled symbol: {self.symbol[:20]}"
                )
            )
            self.close(code=int(CloseCode.POLICY))
            return
        for group in (CATALOG_GROUP, symbol_group(self.symbol)):
            async_to_sync(self.channel_layer.group_add)(group, self.channel_name)
            self.joined.append(group)
        self.send(text_data=streaming.hello(catalog))
        self._send_snapshot(protocol.DEFAULT_INTERVAL)

    def disconnect(self, code: int) -> None:
        for group in self.joined:
            async_to_sync(self.channel_layer.group_discard)(group, self.channel_name)

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            op = protocol.parse_client_frame(text_data, bytes_data, limits=self.limits)
            if isinstance(op, Ping):
                self.send(text_data=protocol.pong_frame(op.id, streaming.server_time()))
                return
            others = [s for s in op.symbols if s != self.symbol]
            if others:
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, f"this stream serves {self.symbol} only; use /ws/stream/ for others", op.id
                )
            if isinstance(op, Subscribe):
                self.send(text_data=protocol.ack_frame(op.id, "subscribe", op.symbols))
                self._send_snapshot(op.interval)
            else:
                removed = [s for s in op.symbols if self.subs.remove(s)]
                self.send(text_data=protocol.ack_frame(op.id, "unsubscribe", removed))
        except ProtocolError as err:
            self.send(text_data=err.frame())

    def _send_snapshot(self, interval: str) -> None:
        snap = read_snapshots(streaming.sync_redis(), [self.symbol], interval)[self.symbol]
        self.subs.add(self.symbol, snap.epoch, snap.seq)
        self.send(text_data=streaming.snapshot(snap, self.catalog[self.symbol]["status"], interval))

    def symbol_ticks(self, event: dict[str, Any]) -> None:
        epoch, first, last, piece = event["entry"]
        fresh = self.subs.accept(event["symbol"], epoch, first, last, piece)
        if fresh:
            self.send(text_data=protocol.ticks_frame([fresh]))

    def catalog_changed(self, event: dict[str, Any]) -> None:
        self.catalog = _catalog_index(event["catalog"])
        self.send(text_data=event["frame"])
