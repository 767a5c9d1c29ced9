"""Seed Ticker's benchmark database: symbols S00..S<N-1> at a total tick rate, and traders.

Run inside the product's directory with its settings, e.g.
``DATABASE_URL=sqlite:///... python bench/seed.py --symbols 50 --rate 200 --user bench --password ...``.
Every other symbol is disabled. Run again with another ``--rate`` to retune the running
producer (it re-reads the catalog every ``TICKER_CATALOG_REFRESH_MS``).

``--sessions N --sessions-out FILE`` also creates N more traders (``bench-00001``...) and
logs each one in through ``django.contrib.auth.login`` (as Django's test client's
``force_login`` does), writing their session keys to FILE: every simulated dashboard is
its own user, so per-user stream limits apply as they would to real traders.
Standalone on purpose: it imports nothing from ``bench`` so it works against any
checkout of Ticker.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from decimal import Decimal
from typing import Any

logger = logging.getLogger("bench.seed")


def interval_for(symbols: int, rate: float) -> int:
    """Per-symbol tick interval (ms) giving ``rate`` ticks/s over ``symbols`` symbols."""
    return round(symbols * 1000 / rate)


def main(argv: list[str] | None = None) -> int:
    """Create or retune the benchmark symbols; create the user when asked."""
    parser = argparse.ArgumentParser(prog="bench/seed.py")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--rate", type=float, required=True, help="ticks/s over all symbols")
    parser.add_argument("--user", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--sessions", type=int, default=0, help="traders to create and log in")
    parser.add_argument("--sessions-out", default="", help="JSON file for their session keys")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ticker.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.http import HttpRequest

    from dashboard.models import MAX_TICK_INTERVAL_MS, MIN_TICK_INTERVAL_MS, Symbol

    interval = interval_for(args.symbols, args.rate)
    if not MIN_TICK_INTERVAL_MS <= interval <= MAX_TICK_INTERVAL_MS:
        parser.error(f"{args.rate} ticks/s over {args.symbols} symbols needs {interval} ms per symbol")
    width = max(2, len(str(args.symbols - 1)))
    codes = [f"S{i:0{width}d}" for i in range(args.symbols)]
    with transaction.atomic():
        # update(), not save(): no catalog broadcast to open streams, the producer reloads it.
        Symbol.objects.exclude(symbol__in=codes).update(enabled=False)
        existing = set(Symbol.objects.filter(symbol__in=codes).values_list("symbol", flat=True))
        Symbol.objects.filter(symbol__in=codes).update(enabled=True, halted=False, tick_interval_ms=interval)
        Symbol.objects.bulk_create(
            Symbol(
                symbol=code,
                name=f"Bench {code}",
                initial_price=Decimal(100 + i),
                precision=2,
                volatility=0.3,
                spread_bps=5.0,
                tick_interval_ms=interval,
            )
            for i, code in enumerate(codes)
            if code not in existing
        )
        if args.user:
            user_model = get_user_model()
            user, _ = user_model.objects.get_or_create(username=args.user)
            user.set_password(args.password)
            user.save()
    logger.info("%d symbols at %d ms each (%.0f ticks/s)", len(codes), interval, args.symbols * 1000 / interval)
    if args.sessions:
        keys = create_sessions(args.sessions, get_user_model(), HttpRequest)
        with open(args.sessions_out, "w") as handle:
            json.dump(keys, handle)
        logger.info("%d traders logged in", len(keys))
    return 0


def create_sessions(count: int, user_model: Any, request_class: Any) -> list[str]:
    """Create ``count`` traders (no usable password) and one logged-in session each."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import login
    from django.db import transaction

    names = [f"bench-{i:05d}" for i in range(1, count + 1)]
    with transaction.atomic():
        existing = set(user_model.objects.filter(username__in=names).values_list("username", flat=True))
        new = []
        for name in names:
            if name not in existing:
                user = user_model(username=name)
                user.set_unusable_password()
                new.append(user)
        user_model.objects.bulk_create(new)
    engine = import_module(settings.SESSION_ENGINE)
    keys = []
    with transaction.atomic():
        for user in user_model.objects.filter(username__in=names).order_by("username"):
            request = request_class()
            request.session = engine.SessionStore()
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session.save()
            keys.append(request.session.session_key)
    return keys


if __name__ == "__main__":
    sys.exit(main())
