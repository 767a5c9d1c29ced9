"""The long-lived price producer that runs inside each Celery worker process.

Every window (100 ms by default) it ticks each symbol it owns, stores the ticks in
Redis through a lease-checked script, then publishes the window once through
``dashboard.market.broadcast``. Ownership is a per-symbol lease in Redis: however many workers
run, one producer ticks a symbol; when its worker dies the lease expires and another
worker's producer continues the same series (same epoch, next seq).

Redis is the source of truth for a series: after any Redis error the producer drops
everything it owned and re-acquires it from the stored state, so a failed write can
never leave a gap or a duplicate ``seq`` behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from dashboard.market import store as market_store
from dashboard.market.book_store import BOOK_COMMIT_SCRIPT
from dashboard.market.broadcast import publish_window
from dashboard.market.candles import Candle
from dashboard.market.protocol import BatchEntry, encode_ticks
from ticker import metrics
from workers.series import BookWindow, OwnedSeries, book_window, open_series, step
from workers.simulator import DEFAULT_TIME_SCALE, SymbolSpec, Tick, next_window_ms, on_the_clock

if TYPE_CHECKING:
    from workers.alerts import AlertWatcher

logger = logging.getLogger(__name__)

# A producer that fell behind (Redis outage, paused process) does not replay the
# missed time as a burst of ticks: it resumes from now.
MAX_CATCH_UP_MS = 1000
ACQUIRE_EVERY_MS = 500
# While a symbol's history is generated its lease is held this long, renewed every acquire round.
BACKFILL_LEASE_MS = 30_000
# A Redis outage fails every window: log the first failure and then one in this many.
LOG_EVERY_FAILURES = 50
# Failing windows back off by this much per failure in a row, up to the cap, so an outage
# costs neither a busy loop nor more than a couple of seconds once Redis is back.
FAILURE_BACKOFF_SECONDS = 0.2
MAX_FAILURE_BACKOFF_SECONDS = 2.0


@dataclass(frozen=True)
class ProducerConfig:
    owner: str
    window_ms: int = 100
    lease_ms: int = 3000
    catalog_refresh_ms: int = 1000
    keep_ticks: int = 1200
    time_scale: float = DEFAULT_TIME_SCALE


class Producer:
    """Simulates, stores and publishes the ticks of the symbols it holds leases for."""

    def __init__(
        self,
        config: ProducerConfig,
        *,
        redis: Any,
        layer: Any,
        load_catalog: Callable[[], Awaitable[list[SymbolSpec]]],
        rng: random.Random | None = None,
        alerts: AlertWatcher | None = None,
        backfill: Callable[[SymbolSpec, int], Awaitable[object]] | None = None,
    ) -> None:
        self.config = config
        # Price alerts checked against every window's committed ticks (workers/alerts.py).
        self.alerts = alerts
        self.redis = redis
        self.layer = layer
        self.load_catalog = load_catalog
        self.rng = rng or random.Random()
        self.specs: dict[str, SymbolSpec] = {}
        self.owned: dict[str, OwnedSeries] = {}
        self._commit = redis.register_script(market_store.COMMIT_SCRIPT)
        self._renew = redis.register_script(market_store.RENEW_SCRIPT)
        self._release = redis.register_script(market_store.RELEASE_SCRIPT)
        self._commit_book = redis.register_script(BOOK_COMMIT_SCRIPT)
        # Each window's book changes and trades per symbol, taken at commit.
        self._books: dict[str, BookWindow] = {}
        self._catalog_due_ms = 0
        self._catalog_version: bytes | None = None
        self._acquire_due_ms = 0
        self._handover: bytes | None = None
        self._free_last_round: set[str] = set()
        self.last_window_ms = 0
        # Symbols acquired with no series state: their history is written in the background
        # (workers/history.py), then their series continues from its last close.
        self.backfill = backfill
        self.backfilling: dict[str, asyncio.Task[object]] = {}

    # --- lifecycle ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run windows until ``stop`` is set, surviving Redis and database outages."""
        failures = 0
        window_at = now_ms()
        logger.info("producer %s started (window %d ms)", self.config.owner, self.config.window_ms)
        while not stop.is_set():
            now = now_ms()
            metrics.PRODUCER_LAG.observe(max(0, now - window_at) / 1000.0)
            try:
                await self.run_window(now)
                if failures:
                    logger.info("producer %s recovered after %d failed windows", self.config.owner, failures)
                failures = 0
            except Exception as exc:
                failures += 1
                metrics.PRODUCER_WINDOW_FAILURES.inc()
                # Redis holds the truth: forget what we owned and re-acquire it later.
                self.owned.clear()
                self._acquire_due_ms = 0
                if failures == 1 or failures % LOG_EVERY_FAILURES == 0:
                    logger.warning("producer window failed (%d in a row): %r", failures, exc)
            # The next window on the clock: one that fell behind is skipped, not run back to back.
            done = now_ms()
            window_at = next_window_ms(done, self.config.window_ms)  # always after ``done``
            delay = (window_at - done) / 1000.0
            if failures:
                delay = max(delay, min(FAILURE_BACKOFF_SECONDS * failures, MAX_FAILURE_BACKOFF_SECONDS))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
        await self.release_all()
        if self.alerts is not None:
            await self.alerts.close()
        logger.info("producer %s stopped", self.config.owner)

    async def release_all(self) -> None:
        """Give up every lease so another worker takes over without waiting for expiry."""
        try:
            # Leaving the live set at once lets the others' fair share grow at once.
            await self.redis.zrem(market_store.PRODUCERS_KEY, self.config.owner)
        except Exception as exc:
            logger.warning("could not leave the live producers on stop: %r", exc)
        for task in self.backfilling.values():
            task.cancel()
        held = [*self.owned, *self.backfilling]
        self.backfilling.clear()
        if not held:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for symbol in held:
                    await self._release(keys=[market_store.lease_key(symbol)], args=[self.config.owner], client=pipe)
                pipe.incr(market_store.HANDOVER_KEY)
                await pipe.execute()
        except Exception as exc:
            logger.warning("could not release leases on stop: %r", exc)
        self.owned.clear()

    # --- one window ---------------------------------------------------------------

    async def run_window(self, now: int) -> dict[str, BatchEntry]:
        """Tick, store and publish everything due at ``now``; returns what was published."""
        version, alerts_version, handover = await self.redis.mget(
            market_store.CATALOG_VERSION_KEY, market_store.ALERTS_VERSION_KEY, market_store.HANDOVER_KEY
        )
        if handover != self._handover:
            # A producer stopped and released its leases: take them now, not at the next round.
            self._handover = handover
            self._acquire_due_ms = 0
        if now >= self._catalog_due_ms or version != self._catalog_version:
            # An admin change bumps the version: applied within one window, not one refresh period.
            self._catalog_version = version
            await self.refresh_catalog()
            await self.apply_controls()
            self._catalog_due_ms = now + self.config.catalog_refresh_ms
        if now >= self._acquire_due_ms:
            await self.acquire_free_symbols(now)
            self._acquire_due_ms = now + ACQUIRE_EVERY_MS
        produced, closed = self.tick_owned(now)
        owner = self.config.owner
        self._books = {symbol: book_window(series, symbol, owner, now) for symbol, series in self.owned.items()}
        committed = await self.commit(produced, closed)
        entries = {
            symbol: BatchEntry(
                epoch=self.owned[symbol].epoch,
                first_seq=ticks[0].seq,
                last_seq=ticks[-1].seq,
                piece=encode_ticks(t.to_wire() for t in ticks),
            )
            for symbol, ticks in produced.items()
            if symbol in committed
        }
        books = {s: w.entry for s, w in self._books.items() if s in committed and w.entry is not None}
        trades = {s: w.trades for s, w in self._books.items() if s in committed and w.trades is not None}
        await publish_window(self.layer, entries, books, trades)
        if self.alerts is not None:
            await self.alerts.on_window(alerts_version, now, produced, committed)
        metrics.PRODUCER_TICKS.inc(sum(len(ticks) for symbol, ticks in produced.items() if symbol in committed))
        if self.owned:
            # Readiness probes read how long ago a producer last completed a window.
            await self.redis.set(market_store.PRODUCER_HEARTBEAT_KEY, now)
        self.last_window_ms = now
        return entries

    async def refresh_catalog(self) -> None:
        try:
            specs = {spec.symbol: spec for spec in await self.load_catalog()}
        except Exception as exc:
            logger.warning("symbol catalog not reloaded, keeping the previous one: %r", exc)
            return
        gone = [symbol for symbol in self.owned if symbol not in specs]
        for symbol in gone:
            await self._release(keys=[market_store.lease_key(symbol)], args=[self.config.owner])
            del self.owned[symbol]
            logger.info("released %s: no longer enabled", symbol)
        for symbol, series in self.owned.items():
            spec = specs[symbol]
            if spec != series.process.spec:
                if series.process.spec.halted and not spec.halted:
                    series.next_tick_ms = now_ms()
                # A resumed symbol, or one whose interval changed, back on its clock.
                series.next_tick_ms = on_the_clock(series.next_tick_ms, spec.tick_interval_ms)
                series.process.retune(spec)
                series.book.retune(spec)
        self.specs = specs

    async def apply_controls(self) -> None:
        """Run queued admin commands (shock, reset) for the symbols this producer owns."""
        if not self.owned:
            return
        symbols = list(self.owned)
        async with self.redis.pipeline(transaction=False) as pipe:
            for symbol in symbols:
                pipe.lpop(market_store.control_key(symbol), market_store.MAX_CONTROLS)
            replies = await pipe.execute()
        for symbol, commands in zip(symbols, replies, strict=True):
            for raw in commands or ():
                self._apply_control(symbol, orjson.loads(raw))

    def _apply_control(self, symbol: str, command: dict[str, Any]) -> None:
        process = self.owned[symbol].process
        before = process.mid
        if command.get("op") == "shock":
            process.shock(float(command["fraction"]))
            self.owned[symbol].book.shock(float(command["fraction"]))
        elif command.get("op") == "reset":
            process.mid = process.spec.initial_price
        else:
            logger.warning("%s: ignoring unknown control %r", symbol, command)
            return
        logger.info("%s: %s applied, mid %.8g -> %.8g", symbol, command["op"], before, process.mid)

    async def fair_share(self, now: int) -> int:
        """How many symbols this producer should hold: an even split over the live producers.

        Each producer stamps itself into ``PRODUCERS_KEY`` every acquire round; one that
        has not for a lease period counts as gone (its leases expire at the same time).
        """
        key = market_store.PRODUCERS_KEY
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {self.config.owner: now})
            pipe.zremrangebyscore(key, "-inf", now - self.config.lease_ms)
            pipe.zcard(key)
            pipe.pexpire(key, 10 * self.config.lease_ms)
            live = (await pipe.execute())[2]
        return -(-len(self.specs) // max(1, live))

    async def rebalance(self, share: int) -> None:
        """Give up one symbol a round while holding more than the fair share (a worker joined)."""
        if len(self.owned) + len(self.backfilling) <= share or not self.owned:
            return
        symbol = next(iter(self.owned))
        await self._release(keys=[market_store.lease_key(symbol)], args=[self.config.owner])
        del self.owned[symbol]
        logger.info("%s: released to rebalance (%d held, fair share %d)", symbol, len(self.owned), share)

    async def acquire_free_symbols(self, now: int) -> None:
        await self._adopt_backfilled(now)
        share = await self.fair_share(now)
        await self.rebalance(share)
        free = [s for s in self.specs if s not in self.owned and s not in self.backfilling]
        room = share - len(self.owned) - len(self.backfilling)
        # Beyond the share only what stayed free for a whole round: nobody else takes it
        # (a producer counted live that is gone), and rebalancing hands it back later.
        stale = [s for s in free if s in self._free_last_round]
        self._free_last_round = set(free)
        self.rng.shuffle(free)
        candidates = free[: max(0, room)] + [s for s in stale if s not in free[: max(0, room)]]
        if not candidates:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for symbol in candidates:
                pipe.set(market_store.lease_key(symbol), self.config.owner, nx=True, px=self.config.lease_ms)
            won = [s for s, ok in zip(candidates, await pipe.execute(), strict=True) if ok]
        if not won:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for symbol in won:
                pipe.hgetall(market_store.state_key(symbol))
                pipe.hgetall(market_store.forming_key(symbol))
            replies = await pipe.execute()
        for i, symbol in enumerate(won):
            state = market_store.SeriesState.from_redis(replies[2 * i])
            forming = market_store.parse_forming(replies[2 * i + 1]) if state else {}
            if state is None and self.backfill is not None:
                await self._start_backfill(symbol, now)
                continue
            self.owned[symbol] = await self._open_series(self.specs[symbol], state, forming, now)

    async def _open_series(
        self, spec: SymbolSpec, state: market_store.SeriesState | None, forming: dict[str, Candle], now: int
    ) -> OwnedSeries:
        rng = random.Random(self.rng.getrandbits(64))
        return await open_series(self.redis, spec, state, forming, now, rng, self.config.time_scale)

    async def _start_backfill(self, symbol: str, now: int) -> None:
        lease = market_store.lease_key(symbol)
        await self._renew(keys=[lease], args=[self.config.owner, BACKFILL_LEASE_MS])
        self.backfilling[symbol] = asyncio.create_task(self.backfill(self.specs[symbol], now))
        logger.info("%s: no series state, generating its history first", symbol)

    async def _adopt_backfilled(self, now: int) -> None:
        """Open the series whose history is written; keep the leases of those still in progress."""
        if not self.backfilling:
            return
        done = [s for s, task in self.backfilling.items() if task.done()]
        running = [s for s in self.backfilling if s not in done]
        if running:
            async with self.redis.pipeline(transaction=False) as pipe:
                for symbol in running:
                    await self._renew(
                        keys=[market_store.lease_key(symbol)], args=[self.config.owner, BACKFILL_LEASE_MS], client=pipe
                    )
                await pipe.execute()
        for symbol in done:
            task = self.backfilling.pop(symbol)
            if not task.cancelled() and task.exception() is not None:
                # The series still starts: at the initial price, as before history existed.
                logger.warning("%s: history not generated: %r", symbol, task.exception())
            if symbol not in self.specs:
                # It left the catalog (deleted or disabled) while its history was written: that
                # history is nobody's series yet. Dropped with the lease, so a deleted code
                # created again starts afresh instead of resuming it (a disabled one is backfilled
                # again from its stored candles when it returns).
                await market_store.purge_symbol(self.redis, symbol, self.config.owner)
                continue
            state_raw, forming_raw = await asyncio.gather(
                self.redis.hgetall(market_store.state_key(symbol)), self.redis.hgetall(market_store.forming_key(symbol))
            )
            state = market_store.SeriesState.from_redis(state_raw)
            forming = market_store.parse_forming(forming_raw) if state else {}
            self.owned[symbol] = await self._open_series(self.specs[symbol], state, forming, now)

    def tick_owned(self, now: int) -> tuple[dict[str, list[Tick]], dict[str, list[Candle]]]:
        """Ticks due at ``now`` per symbol, and the candles they (or the clock) closed."""
        produced: dict[str, list[Tick]] = {}
        closed: dict[str, list[Candle]] = {}
        for symbol, series in self.owned.items():
            spec = series.process.spec
            done: list[Candle] = []
            if not spec.halted:
                if now - series.next_tick_ms > MAX_CATCH_UP_MS:
                    series.next_tick_ms = on_the_clock(now, spec.tick_interval_ms)
                ticks: list[Tick] = []
                interval = spec.tick_interval_ms
                while series.next_tick_ms <= now:
                    tick = step(series, series.process.next_tick(series.next_tick_ms, interval / 1000.0))
                    done += series.candles.add(tick.ts, tick.price, tick.volume)
                    ticks.append(tick)
                    series.next_tick_ms += interval
                if ticks:
                    series.quote = series.process.quote(ticks[-1])
                    produced[symbol] = ticks
            else:
                series.book.halt()
            done += series.candles.close_due(now)
            if done:
                closed[symbol] = done
        return produced, closed

    async def commit(self, produced: dict[str, list[Tick]], closed: dict[str, list[Candle]]) -> set[str]:
        """Store produced ticks and candles, renew every lease; returns the symbols still ours."""
        if not self.owned:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            return await self._commit_with(pipe, produced, closed)

    async def _commit_with(
        self, pipe: Any, produced: dict[str, list[Tick]], closed: dict[str, list[Candle]]
    ) -> set[str]:
        cfg = self.config
        order: list[str] = []
        for symbol, series in self.owned.items():
            ticks = produced.get(symbol, [])
            done = closed.get(symbol, [])
            if ticks or done:
                process = series.process
                session = process.session
                state = market_store.SeriesState(
                    epoch=series.epoch,
                    seq=process.seq,
                    mid=process.mid,
                    quote=series.quote,
                    session=[session.open, session.high, session.low, session.volume],
                )
                args = market_store.commit_args(
                    cfg.owner,
                    cfg.lease_ms,
                    state,
                    [(t.seq, encode_ticks([t.to_wire()])) for t in ticks],
                    symbol=symbol,
                    forming=list(series.candles.forming.values()),
                    closed=done,
                    keep_ticks=cfg.keep_ticks,
                )
                await self._commit(keys=market_store.commit_keys(symbol), args=args, client=pipe)
            else:
                await self._renew(keys=[market_store.lease_key(symbol)], args=[cfg.owner, cfg.lease_ms], client=pipe)
            order.append(symbol)
            if symbol in self._books and (book := self._books[symbol].commit) is not None:
                await self._commit_book(keys=book[0], args=book[1], client=pipe)
                order.append("")  # its result says no more than the commit's
        results = await pipe.execute()
        kept: set[str] = set()
        for symbol, ok in zip(order, results, strict=True):
            if not symbol:
                continue
            if ok:
                kept.add(symbol)
            else:
                logger.warning("%s: lease lost to another producer, stopping its series here", symbol)
                del self.owned[symbol]
        return kept


def now_ms() -> int:
    return time.time_ns() // 1_000_000
