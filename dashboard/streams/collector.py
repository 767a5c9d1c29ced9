"""A full garbage collection once a wave of closed streams has passed.

A closed stream leaves reference cycles (its consumer, tasks, Twisted and autobahn
protocol objects): about 55 objects each, which only CPython's full collection frees.
That collection scans the whole heap, so it costs as much as the process is big, and it
runs when the heap has grown enough, which is when a crowd is connecting: in
``make bench`` a full collection of 317 ms ran in the middle of the connect storm and
freed the 109,262 objects that 2,000 streams closed one scenario earlier had left. The
connected dashboards' p99 was 459 ms.

So the web process collects itself once at least ``WAVE`` streams have closed and no
stream has opened or closed for ``QUIET_SECONDS``: the pause (the same one CPython would
take later) falls while nobody is arriving, and a storm that follows starts from a heap
with nothing to free. Under steady churn with no quiet moment CPython's own collections
still run as before.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref

logger = logging.getLogger(__name__)

WAVE = 200
QUIET_SECONDS = 2.0


class WaveCollector:
    """Counts closed streams of one event loop and collects after a quiet moment."""

    def __init__(self, wave: int = WAVE, quiet: float = QUIET_SECONDS) -> None:
        self.wave = wave
        self.quiet = quiet
        self.closed_since = 0
        self.last_change = time.monotonic()
        self.collections = 0
        self._watching: asyncio.Task[None] | None = None

    def opened(self) -> None:
        self.last_change = time.monotonic()

    def closed(self) -> None:
        self.closed_since += 1
        self.last_change = time.monotonic()
        if self.closed_since >= self.wave and self._watching is None:
            self._watching = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        try:
            while True:
                idle = time.monotonic() - self.last_change
                if idle >= self.quiet:
                    break
                await asyncio.sleep(self.quiet - idle)
            started = time.perf_counter()
            freed = gc.collect()
            self.collections += 1
            logger.info(
                "full collection after %d closed streams: %d objects freed in %.0f ms",
                self.closed_since,
                freed,
                (time.perf_counter() - started) * 1000,
            )
            self.closed_since = 0
        finally:
            self._watching = None


_collectors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WaveCollector] = weakref.WeakKeyDictionary()


def collector() -> WaveCollector:
    """This event loop's collector."""
    loop = asyncio.get_running_loop()
    found = _collectors.get(loop)
    if found is None:
        found = _collectors[loop] = WaveCollector()
    return found
