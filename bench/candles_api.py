"""Benchmark: candle history API speed on a market a month old.

``python -m bench.candles_api`` builds a throw-away database (SQLite, or ``--database``)
and Redis holding ``--symbols`` symbols with 30 days of generated history kept as the
default retention keeps it (5 s for 6 h, 1 m for 30 days, 5 m, 15 m and 1 h all of it),
then times ``GET /api/symbols/<S>/candles/?interval=…&limit=…`` through Django's full
request path (middleware, session auth, the API, the database and Redis reads) and
prints, per interval and limit, the latency percentiles and requests per second of one
process. Figures go to ``bench/results/<time>-candles.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
logger = logging.getLogger("bench.candles_api")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.candles_api")
    parser.add_argument("--symbols", type=int, default=2)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=60, help="timed requests per interval and limit")
    parser.add_argument("--database", default="", help="a DATABASE_URL (default: a fresh SQLite file)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.path.insert(0, str(ROOT))

    from ticker.embedded_redis import EmbeddedRedis, free_port

    with tempfile.TemporaryDirectory(prefix="ticker-candles-bench-") as tmp:
        redis_server = EmbeddedRedis(free_port(), Path(tmp) / "redis", persist=False)
        redis_server.start()
        try:
            os.environ.update(
                {
                    "DJANGO_SETTINGS_MODULE": "ticker.settings",
                    "DEBUG": "1",
                    "ALLOWED_HOSTS": "testserver,127.0.0.1",
                    "REDIS_URL": redis_server.url,
                    "DATABASE_URL": args.database or f"sqlite:///{Path(tmp) / 'db.sqlite3'}",
                    "TICKER_VAR_DIR": str(Path(tmp) / "var"),
                }
            )
            rows = run(args)
        finally:
            redis_server.stop()
    write(rows, args)
    return 0


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    import django

    django.setup()
    from decimal import Decimal

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from dashboard.market import store
    from dashboard.market.candles import INTERVALS_MS
    from dashboard.market.client import sync_redis
    from dashboard.models import Candle, Symbol
    from dashboard.services import store_history
    from workers.backfill import DAY_MS, generate_history
    from workers.simulator import SymbolSpec

    call_command("migrate", verbosity=0)
    retention = settings.TICKER["CANDLE_RETENTION_MS"]
    end = time.time_ns() // 1_000_000
    codes = [f"B{i:02d}" for i in range(args.symbols)]
    started = time.perf_counter()
    for code in codes:
        Symbol.objects.create(symbol=code, name=code, initial_price=Decimal("100"))
        spec = SymbolSpec(symbol=code, initial_price=100.0, volatility=0.4)
        keep = {i: k for i, k in retention.items() if k is not None}
        # 5 s steps: a month of one symbol in about a second; candles as the live market stores them.
        history = generate_history(spec, end_ms=end, span_ms=args.days * DAY_MS, seed=code, keep_ms=keep, step_ms=5000)
        store_history(code, [c for candles in history.closed.values() for c in candles], batch=5000)
        with sync_redis().pipeline(transaction=True) as pipe:
            state = store.SeriesState("bench", 0, history.mid, history.quote, None)
            store.queue_history(pipe, code, state, history.closed, history.forming)
            pipe.execute()
    total_rows = Candle.objects.count()
    logger.info(
        "market: %d symbols, %d days, %d candle rows (built in %.1f s)",
        len(codes),
        args.days,
        total_rows,
        time.perf_counter() - started,
    )

    # No password: the client logs in with force_login.
    user = get_user_model().objects.create_user("bench-candles")
    client = Client()
    client.force_login(user)
    rows: list[dict[str, object]] = []
    for interval in INTERVALS_MS:
        for limit in (200, 1000):
            url = f"/api/symbols/{codes[0]}/candles/?interval={interval}&limit={limit}"
            for _ in range(5):  # warm-up: connections, query plans, imports
                client.get(url)
            times = []
            size = count = 0
            for i in range(args.requests):
                url = f"/api/symbols/{codes[i % len(codes)]}/candles/?interval={interval}&limit={limit}"
                t0 = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"{url}: HTTP {response.status_code}")
                size = len(response.content)
                count = len(response.json()["candles"])
            rows.append(
                {
                    "interval": interval,
                    "limit": limit,
                    "candles": count,
                    "bytes": size,
                    "p50_ms": round(statistics.median(times), 2),
                    "p95_ms": round(percentile(times, 0.95), 2),
                    "max_ms": round(max(times), 2),
                    "req_per_s": round(1000 / statistics.mean(times), 1),
                }
            )
    rows_meta = {"symbols": len(codes), "days": args.days, "candle_rows": total_rows}
    for row in rows:
        row.update(rows_meta)
    return rows


def write(rows: list[dict[str, object]], args: argparse.Namespace) -> None:
    header = "| interval | limit | candles | bytes | p50 ms | p95 ms | max ms | req/s (1 process) |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['interval']} | {r['limit']} | {r['candles']} | {r['bytes']} | {r['p50_ms']} | {r['p95_ms']} "
            f"| {r['max_ms']} | {r['req_per_s']} |"
        )
    table = "\n".join(lines)
    logger.info("candles API, %d requests each:\n%s", args.requests, table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    (RESULTS / f"{stamp}-candles.json").write_text(json.dumps(rows, indent=2))
    meta = rows[0] if rows else {}
    (RESULTS / f"{stamp}-candles.md").write_text(
        f"# Candles API, {stamp}\n\n{meta.get('symbols')} symbols, {meta.get('days')} days of history, "
        f"{meta.get('candle_rows')} candle rows; {args.requests} requests per row through Django's "
        f"test client (middleware, session, API, database, Redis), one process.\n\n{table}\n"
    )
    logger.info("written to %s", RESULTS / f"{stamp}-candles.json")


if __name__ == "__main__":
    raise SystemExit(main())
