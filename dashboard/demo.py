"""The demo market and demo accounts that `make run` loads (idempotent)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from dashboard.models import AssetClass, Symbol

# symbol, name, asset class, price, precision, volatility, tick interval (ms), spread (bps)
DEMO_SYMBOLS: list[tuple[str, str, str, str, int, float, int, float]] = [
    ("AAPL", "Apple Inc.", AssetClass.EQUITY, "189.50", 2, 0.28, 250, 2.0),
    ("MSFT", "Microsoft Corp.", AssetClass.EQUITY, "415.20", 2, 0.25, 300, 2.0),
    ("NVDA", "NVIDIA Corp.", AssetClass.EQUITY, "875.30", 2, 0.55, 200, 3.0),
    ("AMZN", "Amazon.com Inc.", AssetClass.EQUITY, "178.40", 2, 0.32, 300, 2.0),
    ("TSLA", "Tesla Inc.", AssetClass.EQUITY, "175.60", 2, 0.60, 200, 4.0),
    ("GOOGL", "Alphabet Inc.", AssetClass.EQUITY, "152.80", 2, 0.30, 350, 2.0),
    ("JPM", "JPMorgan Chase & Co.", AssetClass.EQUITY, "195.10", 2, 0.22, 400, 2.0),
    ("BTC-USD", "Bitcoin", AssetClass.CRYPTO, "67250.00", 2, 0.70, 150, 1.5),
    ("ETH-USD", "Ether", AssetClass.CRYPTO, "3450.00", 2, 0.80, 200, 2.0),
    ("SOL-USD", "Solana", AssetClass.CRYPTO, "145.20", 3, 1.00, 250, 3.0),
    ("DOGE-USD", "Dogecoin", AssetClass.CRYPTO, "0.16120", 5, 1.10, 300, 5.0),
    ("EURUSD", "Euro / US Dollar", AssetClass.FX, "1.08500", 5, 0.08, 250, 0.8),
    ("GBPUSD", "British Pound / US Dollar", AssetClass.FX, "1.27000", 5, 0.09, 300, 1.0),
    ("USDJPY", "US Dollar / Japanese Yen", AssetClass.FX, "151.200", 3, 0.10, 300, 1.0),
]


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    is_staff: bool


def _credentials_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-credentials.json"


def demo_accounts() -> list[DemoAccount]:
    """Demo trader and admin: from env when set, else generated once and kept under var/."""
    stored: dict[str, str] = {}
    path = _credentials_file()
    if path.exists():
        stored = json.loads(path.read_text())
    trader_pw = os.environ.get("DEMO_TRADER_PASSWORD") or stored.get("trader") or secrets.token_urlsafe(9)
    admin_pw = os.environ.get("DEMO_ADMIN_PASSWORD") or stored.get("admin") or secrets.token_urlsafe(9)
    if not os.environ.get("DEMO_TRADER_PASSWORD") and not os.environ.get("DEMO_ADMIN_PASSWORD"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"trader": trader_pw, "admin": admin_pw}))
        path.chmod(0o600)
    return [
        DemoAccount(os.environ.get("DEMO_TRADER_USERNAME", "trader"), trader_pw, is_staff=False),
        DemoAccount(os.environ.get("DEMO_ADMIN_USERNAME", "admin"), admin_pw, is_staff=True),
    ]


@transaction.atomic
def load_demo(*, accounts: bool = True) -> tuple[int, list[DemoAccount]]:
    """Create missing demo symbols and accounts; never overwrite what an admin changed."""
    created = 0
    for code, name, asset_class, price, precision, vol, interval, spread in DEMO_SYMBOLS:
        _, was_created = Symbol.objects.get_or_create(
            symbol=code,
            defaults={
                "name": name,
                "asset_class": asset_class,
                "initial_price": Decimal(price),
                "precision": precision,
                "volatility": vol,
                "tick_interval_ms": interval,
                "spread_bps": spread,
            },
        )
        created += was_created
    if not accounts:
        return created, []
    demo = demo_accounts()
    user_model = get_user_model()
    for account in demo:
        user, _ = user_model.objects.get_or_create(username=account.username)
        user.is_staff = user.is_superuser = account.is_staff
        user.set_password(account.password)
        user.save()
    return created, demo
