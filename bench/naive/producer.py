"""The tutorial producer: ``async_to_sync(channel_layer.group_send)`` once per tick.

``python -m bench.naive.producer --rate R --symbols N`` (with ``REDIS_URL`` and
``DJANGO_SETTINGS_MODULE=bench.naive.settings``). Before each send it stores the tick's
``seq`` under ``naive:seq:<SYM>`` (for snapshots and for the harness to read its rate).
It runs until SIGTERM or ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import time
from types import FrameType

logger = logging.getLogger("bench.naive.producer")


def main(argv: list[str] | None = None) -> int:
    """Entry point: tick every symbol on its own schedule, one ``group_send`` per tick."""
    parser = argparse.ArgumentParser(prog="python -m bench.naive.producer")
    parser.add_argument("--rate", type=float, default=200.0, help="ticks/s over all symbols")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(process)d %(message)s")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.naive.settings")

    import django

    django.setup()
    import redis
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.conf import settings

    from bench.floor import symbol_names
    from bench.naive.consumers import SEQ_KEY, group_name

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    layer = get_channel_layer()
    store = redis.Redis.from_url(settings.REDIS_URL)
    symbols = symbol_names(args.symbols)
    interval = len(symbols) / args.rate
    rng = random.Random(7)
    seq = {s: int(v or 0) for s, v in zip(symbols, store.mget([SEQ_KEY.format(s) for s in symbols]), strict=True)}
    price = {s: 100.0 + i for i, s in enumerate(symbols)}
    start = time.time()
    due = {s: start + i * interval / len(symbols) for i, s in enumerate(symbols)}
    end = time.monotonic() + args.max_seconds
    logger.info("naive producer: %d symbols at %.0f ticks/s", len(symbols), args.rate)
    while not stopping and time.monotonic() < end:
        now = time.time()
        for s in symbols:
            if due[s] > now:
                continue
            if now - due[s] > 1.0:
                due[s] = now  # fell behind: skip ahead instead of bursting
            seq[s] += 1
            price[s] = max(0.01, price[s] * (1 + rng.gauss(0, 0.0005)))
            p = round(price[s], 2)
            tick = {
                "symbol": s,
                "seq": seq[s],
                "ts": int(due[s] * 1000),
                "price": p,
                "bid": round(p * 0.9995, 2),
                "ask": round(p * 1.0005, 2),
                "volume": rng.randint(1, 500),
            }
            store.set(SEQ_KEY.format(s), seq[s])
            async_to_sync(layer.group_send)(group_name(s), {"type": "tick.message", "tick": tick})
            due[s] += interval
        pause = min(due.values()) - time.time()
        if pause > 0:
            time.sleep(min(pause, 0.05))
    logger.info("naive producer stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
