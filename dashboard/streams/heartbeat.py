"""One heartbeat timer per server process for every open stream.

A per-connection timer would cost a task per socket; instead each process runs one
task that builds the ``heartbeat`` frame once per interval and hands it to every
registered stream. Each beat also publishes the process's open-stream count to Redis
(``store.web_streams_key``, expiring after three intervals) for ``manage.py ticker_status``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import weakref
from typing import Protocol

import orjson
from django.conf import settings

from dashboard.market import protocol, store
from dashboard.market.client import async_redis
from dashboard.market.loop_services import BackgroundTask, services
from dashboard.streams.frames import server_time

logger = logging.getLogger(__name__)
# Which web process a published open-stream count belongs to (host:pid).
PROCESS_HOST = socket.gethostname()
# A published count outlives a few missed beats, not a dead process.
REPORT_TTL_BEATS = 3
# A slow Redis may delay the count, never the next beat.
REPORT_TIMEOUT_SECONDS = 1.0


class HeartbeatTarget(Protocol):
    async def send_heartbeat(self, frame: str) -> None: ...


class HeartbeatHub:
    """Registered streams of one event loop, and the task that beats for them."""

    def __init__(self, interval_ms: int) -> None:
        self.interval = interval_ms / 1000.0
        self.targets: weakref.WeakSet[HeartbeatTarget] = weakref.WeakSet()
        self.beats = BackgroundTask(self._beat)
        self.report: asyncio.Task[None] | None = None

    def register(self, target: HeartbeatTarget) -> None:
        self.targets.add(target)
        self.beats.ensure()

    def unregister(self, target: HeartbeatTarget) -> None:
        self.targets.discard(target)

    async def _beat(self) -> None:
        while self.targets:
            await asyncio.sleep(self.interval)
            frame = protocol.heartbeat_frame(server_time())
            for target in list(self.targets):
                try:
                    await target.send_heartbeat(frame)
                except Exception:
                    logger.debug("heartbeat to a closing stream failed", exc_info=True)
            self._report_streams()
        self._report_streams()  # the last stream closed: 0

    def _report_streams(self) -> None:
        """Publish this process's open streams for ``manage.py ticker_status`` (any host).

        In its own task with a deadline: a slow or absent Redis must never delay a heartbeat.
        """
        if self.report is not None and not self.report.done():
            return
        kinds: dict[str, int] = {}
        for target in list(self.targets):
            kind = type(target).__name__.removesuffix("Consumer").lower()
            kinds[kind] = kinds.get(kind, 0) + 1
        entry = {"host": PROCESS_HOST, "pid": os.getpid(), "streams": sum(kinds.values()), "by_kind": kinds}
        entry["ts"] = server_time()
        ttl_ms = int(self.interval * 1000 * REPORT_TTL_BEATS)
        self.report = asyncio.get_running_loop().create_task(_publish(orjson.dumps(entry), ttl_ms))


async def _publish(entry: bytes, ttl_ms: int) -> None:
    try:
        async with asyncio.timeout(REPORT_TIMEOUT_SECONDS):
            await async_redis().set(store.web_streams_key(f"{PROCESS_HOST}:{os.getpid()}"), entry, px=ttl_ms)
    except Exception as exc:
        logger.debug("open-stream count not published: %r", exc)


def _new_hub() -> HeartbeatHub:
    return HeartbeatHub(settings.TICKER["HEARTBEAT_MS"])


def hub() -> HeartbeatHub:
    """The hub of the running event loop."""
    return services.get(_new_hub)
