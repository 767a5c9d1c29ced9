"""Price alerts in the producer: load the active ones, check every window, fire each once.

The producer owns each symbol's ticks, so it is where alerts are checked: with no page
open, within the window of the crossing tick. ``AlertWatcher.on_window`` is the producer's
one hook (``workers/producer.py``, after the window's ticks are committed and published).

* The active alerts live in memory in an ``AlertEvaluator`` (``workers/alert_rules.py``,
  pure), loaded in full in the background at start and every ``refresh_ms`` (5 minutes).
  When ``ALERTS_VERSION_KEY`` changes (the API bumps it on create and delete) only the
  alerts created since the last full load (less a margin) are read and added, and the
  alerts deleted since then (``dashboard/market/alert_deletions.py``, written with the
  bump) are dropped: a trader's new alert is live, and a deleted one gone, within a
  window or two at the cost of a few rows, not 10,000.
* A firing is stored with ``UPDATE ... WHERE triggered_at IS NULL``: of two producers that
  both see the crossing (during a lease handover) exactly one updates the row, and only
  that one publishes the ``alert`` frame to the owner's streams.
  Storing and pushing run as a task beside the window loop: a slow database never delays
  ticks, and the alert still leaves right after the window of its crossing tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from dashboard.market import alert_deletions
from dashboard.market.broadcast import publish_alert
from dashboard.market.client import sync_redis
from dashboard.models import Alert
from workers.alert_rules import PRICE_CONDITIONS, AlertEvaluator, AlertRule, Firing, PricePoint

logger = logging.getLogger(__name__)

REFRESH_MS = 300_000
RETRY_MS = 1_000
# A partial load reads alerts created since the last full load began, less this margin: an
# alert whose transaction was still open then (created, not yet committed) is not missed.
PARTIAL_MARGIN = timedelta(minutes=1)
CLOSE_GRACE_SECONDS = 5.0


def load_active_rules(since: datetime | None = None) -> list[AlertRule]:
    """Every alert that has not fired (created at or after ``since``, if given), as rules; runs on a database thread."""
    close_old_connections()
    try:
        active = Alert.objects.filter(triggered_at__isnull=True)
        if since is not None:
            active = active.filter(created_at__gte=since)
        rows = active.values_list("id", "user_id", "symbol__symbol", "condition", "price", "percent", "window_minutes")
        rules = []
        for pk, user_id, symbol, condition, price, percent, minutes in rows:
            try:
                rules.append(
                    AlertRule(
                        id=pk,
                        user_id=user_id,
                        symbol=symbol,
                        condition=condition,
                        price=float(price) if price is not None else None,
                        percent=float(percent) if percent is not None else None,
                        minutes=minutes,
                    )
                )
            except ValueError as exc:
                # The database's CHECK keeps these out; one that got in must not hide the others.
                logger.warning("alert %s skipped: %s", pk, exc)
        return rules
    finally:
        close_old_connections()


def deleted_alert_ids(since: datetime) -> list[int]:
    """Ids of the alerts deleted at or after ``since`` (as the API recorded them); runs on a thread."""
    return alert_deletions.deleted_since(sync_redis(), int(since.timestamp() * 1000))


def alert_wire(
    *,
    id: int,
    symbol: str,
    condition: str,
    price: float | None,
    percent: float | None,
    minutes: int | None,
    triggered_price: float | None,
    triggered_at_ms: int | None,
) -> dict[str, Any]:
    """An alert as the ``alert`` frame and the HTTP API carry it."""
    wire: dict[str, Any] = {
        "id": id,
        "symbol": symbol,
        "condition": condition,
        "price": price,
        "triggered_price": triggered_price,
        "triggered_at": triggered_at_ms,
    }
    if condition not in PRICE_CONDITIONS:
        wire["percent"] = percent
        wire["minutes"] = minutes
    return wire


def store_firings(firings: Sequence[Firing]) -> list[tuple[int, dict[str, Any]]]:
    """Mark each alert fired unless it already was; returns ``(user_id, alert)`` of those this call fired."""
    close_old_connections()
    try:
        stored: list[tuple[int, dict[str, Any]]] = []
        for firing in firings:
            rule = firing.rule
            when = datetime.fromtimestamp(firing.ts / 1000, tz=UTC)
            updated = Alert.objects.filter(pk=rule.id, triggered_at__isnull=True).update(
                triggered_at=when, triggered_price=firing.price
            )
            if updated:
                alert = alert_wire(
                    id=rule.id,
                    symbol=rule.symbol,
                    condition=rule.condition,
                    price=rule.price,
                    percent=rule.percent,
                    minutes=rule.minutes,
                    triggered_price=firing.price,
                    triggered_at_ms=firing.ts,
                )
                stored.append((rule.user_id, alert))
        return stored
    finally:
        close_old_connections()


class AlertWatcher:
    """The producer's alert hook: one evaluator, reloaded when the alerts change."""

    def __init__(
        self,
        layer: Any,
        *,
        load: Callable[[datetime | None], Awaitable[list[AlertRule]]] | None = None,
        store: Callable[[Sequence[Firing]], Awaitable[list[tuple[int, dict[str, Any]]]]] | None = None,
        load_deleted: Callable[[datetime], Awaitable[list[int]]] | None = None,
        refresh_ms: int = REFRESH_MS,
    ) -> None:
        self.layer = layer
        self.load = load or sync_to_async(load_active_rules, thread_sensitive=False)
        self.load_deleted = load_deleted or sync_to_async(deleted_alert_ids, thread_sensitive=False)
        self.store = store or sync_to_async(store_firings, thread_sensitive=False)
        self.refresh_ms = refresh_ms
        self.evaluator = AlertEvaluator()
        self._version: object = _UNSET
        self._due_ms = 0
        self._now = 0
        self._loading: asyncio.Task[None] | None = None
        self._want_full = False
        self._want_partial = False
        self._full_started: datetime | None = None
        # Firings being stored and pushed: the window never waits on the database.
        self._firing: set[asyncio.Task[list[dict[str, Any]]]] = set()
        self.fired = 0

    async def on_window(
        self, version: bytes | None, now: int, produced: Mapping[str, Sequence[PricePoint]], committed: set[str]
    ) -> list[Firing]:
        """Check one window's committed ticks; what fired is stored and pushed in the background.

        Returns the firings (taken out of the evaluator at once, so none fires twice here).
        """
        self._now = now
        if now >= self._due_ms:
            self._version = version
            self._due_ms = now + self.refresh_ms
            self._want_full = True
            self._start_reload()
        elif version != self._version:
            self._version = version
            self._want_partial = True
            self._start_reload()
        evaluate = self.evaluator.evaluate
        firings: list[Firing] = []
        for symbol, ticks in produced.items():
            if symbol in committed:
                fired = evaluate(symbol, ticks)
                if fired:
                    firings += fired
        if firings:
            task = asyncio.get_running_loop().create_task(self._fire(firings))
            self._firing.add(task)
            task.add_done_callback(self._firing.discard)
        return firings

    async def _fire(self, firings: list[Firing]) -> list[dict[str, Any]]:
        try:
            stored = await self.store(firings)
        except Exception as exc:
            # Not stored: the next reload brings these alerts back, so they fire later.
            self.evaluator.forget_fired(f.rule.id for f in firings)
            self._due_ms = self._now + RETRY_MS
            logger.warning("%d alert firings not stored, retrying after the next reload: %r", len(firings), exc)
            return []
        for user_id, alert in stored:
            logger.info(
                "alert %s fired: %s %s at %s (stored %d ms after the crossing tick)",
                alert["id"],
                alert["symbol"],
                alert["condition"],
                alert["triggered_price"],
                time.time_ns() // 1_000_000 - alert["triggered_at"],
            )
            try:
                await publish_alert(self.layer, user_id, alert)
            except Exception as exc:
                # Stored: the owner sees it on the next visit (GET /api/alerts/?status=unseen).
                logger.warning("alert %s stored but not pushed: %r", alert["id"], exc)
        self.fired += len(stored)
        return [alert for _, alert in stored]

    def _start_reload(self) -> None:
        # A load already running may predate this change: it runs the wanted one after it.
        if self._loading is None or self._loading.done():
            self._loading = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        while self._want_full or self._want_partial:
            full = self._want_full or self._full_started is None
            self._want_full = self._want_partial = False
            started = datetime.now(tz=UTC)
            since = None if full else self._full_started - PARTIAL_MARGIN  # type: ignore[operator]
            try:
                rules = await self.load(since)
                # Read after the rules: an alert deleted while they were read is dropped here,
                # or by the next partial load, which its delete's version bump brings.
                deleted = [] if since is None else await self.load_deleted(since)
            except Exception as exc:
                logger.warning("active alerts not reloaded, keeping the previous set: %r", exc)
                self._due_ms = self._now + RETRY_MS  # then a full load
                return
            if full:
                self.evaluator.replace(rules)
                self._full_started = started
                logger.debug("%d active alerts loaded", len(rules))
            else:
                added, removed = self.evaluator.add(rules), self.evaluator.remove(deleted)
                logger.debug("%d new active alerts added, %d deleted ones dropped", added, removed)

    async def loaded(self) -> None:
        """Wait for a reload in flight (tests, benchmark)."""
        while self._loading is not None and not self._loading.done():
            await asyncio.shield(self._loading)

    async def settled(self) -> None:
        """Wait for a reload and for every firing in flight to be stored and pushed (tests, stop)."""
        await self.loaded()
        while self._firing:
            await asyncio.gather(*self._firing, return_exceptions=True)

    async def close(self) -> None:
        """Producer stop: let firings in flight finish (for ``CLOSE_GRACE_SECONDS``), cancel a reload."""
        if self._firing:
            try:
                async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                    await asyncio.gather(*self._firing, return_exceptions=True)
            except TimeoutError:
                logger.warning("%d alert firings unstored at stop; the next producer fires them", len(self._firing))
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading


_UNSET = object()
