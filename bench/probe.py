"""Producer-side latency: how old each tick already is when its batch crosses Redis.

A thread subscribes to the channel a target's producer publishes its batches on (for
Ticker, the channel layer's ``market`` group channel; for the floor, ``floor:ticks``)
and, per message, records ``now - ts`` of every tick found in it. Subtracting this
from the client-side latency tells how much of a tick's age the web process adds.

Messages are decoded with msgpack (channels-redis) or JSON (the floor), then walked
for strings holding encoded ticks: the probe does not depend on the batch's layout.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import msgpack
import orjson
import redis

logger = logging.getLogger(__name__)


def _tick_times(value: Any, out: list[int], depth: int = 0) -> None:
    """Collect ``ts`` of every encoded tick inside a decoded message."""
    if depth > 6:
        return
    if isinstance(value, dict):
        if "ts" in value and "seq" in value and isinstance(value["ts"], int):
            out.append(value["ts"])
            return
        for item in value.values():
            _tick_times(item, out, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _tick_times(item, out, depth + 1)
    elif isinstance(value, str | bytes) and b'"ts"' in (value if isinstance(value, bytes) else value.encode()):
        text = value if isinstance(value, str) else value.decode()
        for candidate in (text, "[" + text + "]"):
            try:
                _tick_times(orjson.loads(candidate), out, depth + 1)
                return
            except orjson.JSONDecodeError:
                continue


def decode(raw: bytes) -> Any:
    try:
        return msgpack.unpackb(raw, raw=False)
    except Exception:  # not msgpack: JSON (the floor)
        return orjson.loads(raw)


class PublishLagProbe:
    """Subscribes to one Redis channel on a thread; ``stop()`` returns the lag histogram (ms)."""

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.hist: dict[int, int] = {}
        self.messages = 0
        self._stop = threading.Event()
        self._measuring = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publish-lag-probe", daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5)

    def open_window(self) -> None:
        self._measuring.set()

    def stop(self) -> dict[int, int]:
        self._measuring.clear()
        self._stop.set()
        self._thread.join(5)
        return self.hist

    def _run(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=3)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel)
            self._ready.set()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message is None or not self._measuring.is_set():
                    continue
                now = time.time() * 1000.0
                times: list[int] = []
                try:
                    _tick_times(decode(message["data"]), times)
                except Exception:
                    logger.debug("probe could not decode a message", exc_info=True)
                    continue
                self.messages += 1
                for ts in times:
                    lag = max(0, int(now - ts))
                    self.hist[lag] = self.hist.get(lag, 0) + 1
        except redis.RedisError as exc:
            logger.warning("publish-lag probe stopped: %r", exc)
        finally:
            self._ready.set()
            with contextlib.suppress(redis.RedisError):
                pubsub.close()
            client.close()
