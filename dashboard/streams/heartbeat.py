"""One heartbeat timer per server process for every open stream.

A per-connection timer would cost a task per socket; instead each process runs one
task that builds the ``heartbeat`` frame once per interval and hands it to every
registered stream.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

from dashboard.market import protocol
from dashboard.streams.frames import server_time

logger = logging.getLogger(__name__)


class HeartbeatTarget(Protocol):
    async def send_heartbeat(self, frame: str) -> None: ...


class HeartbeatHub:
    """Registered streams of one event loop, and the task that beats for them."""

    def __init__(self, interval_ms: int) -> None:
        self.interval = interval_ms / 1000.0
        self.targets: weakref.WeakSet[HeartbeatTarget] = weakref.WeakSet()
        self.task: asyncio.Task[None] | None = None

    def register(self, target: HeartbeatTarget) -> None:
        self.targets.add(target)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._beat())

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


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HeartbeatHub] = weakref.WeakKeyDictionary()


def hub() -> HeartbeatHub:
    """The hub of the running event loop."""
    from django.conf import settings

    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = HeartbeatHub(settings.TICKER["HEARTBEAT_MS"])
    return found
