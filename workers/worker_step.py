"""A Celery worker bootstep that hosts the price producer on its own thread and loop.

The producer is part of the worker's lifetime rather than a queued task: with a Redis
broker a task can sit unclaimed or vanish with a killed worker, while a lease in
Redis expires on its own and is taken over by the next worker's producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import uuid

from celery import bootsteps, signals

logger = logging.getLogger(__name__)


class ProducerThread(threading.Thread):
    """Runs ``Producer.run`` in a private event loop until ``stop()``."""

    def __init__(self) -> None:
        super().__init__(name="ticker-producer", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from asgiref.sync import sync_to_async
        from channels.layers import get_channel_layer
        from django.conf import settings

        from dashboard.market.client import new_async_redis
        from workers.alerts import AlertWatcher
        from workers.history import HistoryBackfill
        from workers.producer import Producer, ProducerConfig
        from workers.specs import producer_specs

        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._ready.set()
        cfg = settings.TICKER
        config = ProducerConfig(
            owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            window_ms=cfg["WINDOW_MS"],
            lease_ms=cfg["LEASE_MS"],
            catalog_refresh_ms=cfg["CATALOG_REFRESH_MS"],
            keep_ticks=cfg["RECENT_TICKS"],
            time_scale=cfg["TIME_SCALE"],
        )
        redis = new_async_redis()
        layer = get_channel_layer()
        backfill = None
        if cfg["BACKFILL_HOURS"]:
            backfill = HistoryBackfill(
                redis,
                span_ms=cfg["BACKFILL_HOURS"] * 3_600_000,
                keep_ms=cfg["CANDLE_RETENTION_MS"],
                seed=cfg["BACKFILL_SEED"],
                time_scale=cfg["TIME_SCALE"],
            )
        producer = Producer(
            config,
            redis=redis,
            layer=layer,
            load_catalog=sync_to_async(producer_specs, thread_sensitive=False),
            alerts=AlertWatcher(layer),
            backfill=backfill,
        )
        try:
            await producer.run(self._stop_event)
        finally:
            await redis.aclose()

    def request_stop(self, timeout: float = 5.0) -> None:
        """Ask the producer to stop (it releases its leases as it ends); returns at once."""
        self._ready.wait(timeout)
        if self._loop is not None and self._stop_event is not None and not self._loop.is_closed():
            # Asked twice (the shutdown signal, then the step's stop): the second finds the loop
            # closed once the producer has ended, and there is nothing left to ask.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop_event.set)

    def stop(self, timeout: float = 5.0) -> None:
        self.request_stop(timeout)
        self.join(timeout)


class ProducerStep(bootsteps.StartStopStep):
    """Starts the producer with the worker and stops it (releasing its leases) on shutdown."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs) -> None:
        super().__init__(worker, **kwargs)
        self.thread: ProducerThread | None = None

    def start(self, worker) -> None:
        from django.conf import settings

        from dashboard.market.client import sync_redis
        from dashboard.market.redis_requirements import enforce

        # An evicting Redis would silently break leases: refuse to produce on it.
        enforce(sync_redis())
        if not settings.TICKER["PRODUCER_ENABLED"]:
            logger.info("producer disabled on this worker (TICKER_PRODUCER_ENABLED=0)")
            return
        self.thread = ProducerThread()
        self.thread.start()
        signals.worker_shutting_down.connect(self._hand_over_now, weak=False)

    def _hand_over_now(self, **_: object) -> None:
        # Celery announces a warm shutdown as SIGTERM arrives, then stops its consumer and
        # pool before this step: the symbols are handed over now, not a second later at the end.
        if self.thread is not None:
            self.thread.request_stop()

    def stop(self, worker) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None

    shutdown = stop
