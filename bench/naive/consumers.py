"""The tutorial consumer: sync, one group per symbol, one frame per tick, ``json`` encoding."""

from __future__ import annotations

import time
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.generic.websocket import JsonWebsocketConsumer
from django.conf import settings

SEQ_KEY = "naive:seq:{}"
_redis = redis.Redis.from_url(settings.REDIS_URL)


def group_name(symbol: str) -> str:
    return f"ticks_{symbol}"


class TickConsumer(JsonWebsocketConsumer):
    """Joins each subscribed symbol's group and forwards every tick as its own frame."""

    def connect(self) -> None:
        self.groups_joined: list[str] = []
        self.accept()
        self.send_json({"type": "hello", "protocol": 1, "server_time": int(time.time() * 1000)})

    def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            async_to_sync(self.channel_layer.group_discard)(group, self.channel_name)

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("op") != "subscribe":
            self.send_json({"type": "error", "code": "unknown_op", "message": "only subscribe is supported"})
            return
        symbols = [str(s) for s in content.get("symbols", [])]
        for symbol in symbols:
            async_to_sync(self.channel_layer.group_add)(group_name(symbol), self.channel_name)
            self.groups_joined.append(group_name(symbol))
        self.send_json({"type": "ack", "id": content.get("id"), "op": "subscribe", "symbols": symbols})
        # Read after joining: a tick stored before this read arrives later with seq <= snapshot
        # and is skipped by the client; every later tick is delivered through the group.
        for symbol in symbols:
            seq = _redis.get(SEQ_KEY.format(symbol))
            self.send_json({"type": "snapshot", "symbol": symbol, "epoch": "naive", "seq": int(seq or 0)})

    def tick_message(self, event: dict[str, Any]) -> None:
        self.send_json({"type": "ticks", "data": [event["tick"]]})
