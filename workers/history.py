"""Backfill a symbol's history before its live series starts: the thin persistence side.

The producer calls ``HistoryBackfill`` (in the background, holding the symbol's lease)
for every symbol it acquires with no series state in Redis: a first start, a symbol an
admin just added, or Redis that lost its data. The generation is pure
(``workers/backfill.py``) and runs on a thread; this module decides where the history is
anchored and writes it: rows to the database in batches, then the recent-candle lists,
forming candles and series state to Redis, which the producer then continues from.

* No stored candles: a day (``BACKFILL_HOURS``) ending at the symbol's initial price.
* Stored candles (Redis lost its state): the gap from the newest stored 1-minute candle
  to now, starting at its close, so the chart never jumps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from asgiref.sync import sync_to_async

from dashboard.market import store as market_store
from dashboard.market.candles import INTERVALS_MS
from dashboard.selectors import latest_candle
from dashboard.services import store_history
from workers.backfill import FINEST, History, generate_history
from workers.simulator import SymbolSpec

logger = logging.getLogger(__name__)

GAP_INTERVAL = "1m"
# The finest candles are generated for the last hour only (720 five-second candles, more
# than a chart shows): over a day they would be most of the rows to store for little use.
FINEST_SPAN_MS = 3_600_000
COARSE_STEP_MS = 5000


class HistoryBackfill:
    """Generates and stores history for one symbol at a time (CPU and database are shared)."""

    def __init__(
        self,
        redis: Any,
        *,
        span_ms: int,
        keep_ms: Mapping[str, int | None],
        seed: int | str,
        time_scale: float,
    ) -> None:
        self.redis = redis
        self.span_ms = span_ms
        # Nothing is generated further back than an interval keeps: prune would drop it.
        self.keep_ms = {i: k for i, k in keep_ms.items() if k is not None}
        self.keep_ms[FINEST] = min(self.keep_ms.get(FINEST, FINEST_SPAN_MS), FINEST_SPAN_MS)
        self.seed = seed
        self.time_scale = time_scale
        self._generating = asyncio.Lock()
        self._storing = asyncio.Lock()

    async def __call__(self, spec: SymbolSpec, now: int) -> History:
        # Two stages, each one symbol at a time: the next symbol is generated (CPU) while
        # the last one is written (database and Redis, mostly waiting on I/O).
        async with self._generating:
            started = time.perf_counter()
            latest = await sync_to_async(latest_candle, thread_sensitive=False)(spec.symbol, GAP_INTERVAL)
            end_ms = max(now, int(time.time_ns() // 1_000_000))
            kwargs: dict[str, Any] = {}
            if latest is not None and latest.end > end_ms - self.span_ms:
                # Continue the stored history: the gap starts at its last close.
                kwargs = {"start_ms": min(latest.end, end_ms - INTERVALS_MS[FINEST]), "start_price": latest.close}
            elif latest is not None:
                kwargs = {"start_price": latest.close}
            history = await asyncio.to_thread(
                generate_history,
                spec,
                end_ms=end_ms,
                span_ms=self.span_ms,
                seed=self.seed,
                keep_ms=self.keep_ms,
                # One sample a second where 5 s candles are kept, one per 5 s before: the
                # older candles look the same and the day costs about half the CPU.
                coarse_step_ms=COARSE_STEP_MS,
                fine_from_ms=end_ms - self.keep_ms[FINEST],
                time_scale=self.time_scale,
                **kwargs,
            )
            generated = time.perf_counter()
        async with self._storing:
            storing = time.perf_counter()
            rows = [c for candles in history.closed.values() for c in candles]
            await sync_to_async(store_history, thread_sensitive=False)(spec.symbol, rows)
            stored = time.perf_counter()
            session = history.session
            state = market_store.SeriesState(
                epoch=market_store.new_epoch(),
                seq=0,
                mid=history.mid,
                quote=history.quote,
                session=[session.open, session.high, session.low, session.volume],
            )
            async with self.redis.pipeline(transaction=True) as pipe:
                market_store.queue_history(pipe, spec.symbol, state, history.closed, history.forming)
                await pipe.execute()
            logger.info(
                "%s: history of %d candles %s (generated in %.2f s, stored in %.2f s)",
                spec.symbol,
                history.count(),
                "filling the gap after the stored candles" if kwargs else "ending at the initial price",
                generated - started,
                stored - storing,
            )
            return history
