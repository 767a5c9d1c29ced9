"""One market subscription per server process, fanned out locally to its dashboard streams.

With a channel-layer group per consumer, every producer window costs every dashboard a
message: a Redis delivery, a msgpack decode and a dispatch of the same batch, hundreds
of times over. Here the process joins the market group once, decodes each batch once,
and hands it to every registered stream, which only picks and joins its pre-encoded
pieces (``StreamConsumer.deliver``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any, Protocol

from dashboard.market.broadcast import MARKET_GROUP

logger = logging.getLogger(__name__)


class BatchTarget(Protocol):
    async def deliver(self, ticks: dict[str, Any]) -> None: ...


class MarketFeed:
    """The market group's messages for one event loop, delivered to registered streams."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        # Weak: a stream that ends without unregistering must not be kept alive by the feed.
        self.targets: weakref.WeakSet[BatchTarget] = weakref.WeakSet()
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def register(self, target: BatchTarget, wait_seconds: float = 5.0) -> None:
        """Deliver to ``target`` from now on; returns once the subscription is live.

        If the channel layer is unreachable it returns after ``wait_seconds`` anyway: the
        feed keeps trying, and batches flow as soon as it succeeds.
        """
        self.targets.add(target)
        if self.task is None or self.task.done():
            self.ready.clear()
            self.task = asyncio.get_running_loop().create_task(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), wait_seconds)

    def unregister(self, target: BatchTarget) -> None:
        self.targets.discard(target)

    async def _run(self) -> None:
        while True:
            try:
                channel = await self.layer.new_channel()
                await self.layer.group_add(MARKET_GROUP, channel)
                break
            except Exception as exc:
                logger.warning("market feed not subscribed yet, retrying: %r", exc)
                await asyncio.sleep(1.0)
        self.ready.set()
        try:
            while True:
                message = await self.layer.receive(channel)
                ticks = message.get("ticks")
                if not ticks:
                    continue
                for target in list(self.targets):
                    try:
                        await target.deliver(ticks)
                    except Exception:
                        # One broken stream must not starve the others.
                        logger.exception("market batch not delivered to a stream")
        finally:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(MARKET_GROUP, channel)


_feeds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MarketFeed] = weakref.WeakKeyDictionary()


def process_feed(layer: Any) -> MarketFeed:
    """The feed of the running event loop (Daphne runs one loop per process)."""
    loop = asyncio.get_running_loop()
    found = _feeds.get(loop)
    if found is None:
        found = _feeds[loop] = MarketFeed(layer)
    return found
