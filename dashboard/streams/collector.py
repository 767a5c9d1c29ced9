"""A full garbage collection once a wave of closed streams has passed.

A closed stream leaves reference cycles (its consumer, tasks, Twisted and autobahn
protocol objects) that only CPython's full collection frees. That collection scans the
whole heap, so it costs as much as the process is big, and it runs when the heap has
grown enough, which is when a crowd is connecting: a long pause in the middle of a
connect storm (docs/performance.md, "The wave collector", has the figures).

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
from collections.abc import Awaitable, Callable

from dashboard.market.loop_services import BackgroundTask, services

logger = logging.getLogger(__name__)

# Closed streams worth a full collection: about 55 objects each, so a wave is ~10,000 objects.
WAVE = 200
# Long enough that a storm in progress (handshakes every few ms) never looks quiet.
QUIET_SECONDS = 2.0


class WaveCollector:
    """Counts closed streams of one event loop and collects after a quiet moment.

    ``clock`` and ``sleep`` are injected (``time.monotonic`` and ``asyncio.sleep`` by
    default), as the guards take ``now``: whether a collection is due can be decided, and
    tested, without waiting for real time to pass.
    """

    def __init__(
        self,
        wave: int = WAVE,
        quiet: float = QUIET_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.wave = wave
        self.quiet = quiet
        self.clock = clock
        self.sleep = sleep
        self.closed_since = 0
        self.last_change = clock()
        self.collections = 0
        self.watching = BackgroundTask(self._watch)

    def opened(self) -> None:
        self.last_change = self.clock()

    def closed(self) -> None:
        self.closed_since += 1
        self.last_change = self.clock()
        if self.closed_since >= self.wave:
            self.watching.ensure()

    def quiet_for(self, now: float) -> float:
        """Seconds still to wait at ``now`` before the wave may be collected (0: due now)."""
        return max(self.quiet - (now - self.last_change), 0.0)

    def due(self, now: float) -> bool:
        return self.closed_since >= self.wave and self.quiet_for(now) == 0.0

    def collect(self) -> int:
        """Run the full collection now; returns the objects freed."""
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
        return freed

    async def _watch(self) -> None:
        while True:
            wait = self.quiet_for(self.clock())
            if wait == 0.0:
                break
            await self.sleep(wait)
        self.collect()


def collector() -> WaveCollector:
    """This event loop's collector."""
    return services.get(WaveCollector)
