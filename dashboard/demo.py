"""The demo market and demo accounts that `make run` loads (idempotent: what exists is left alone)."""

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
from ticker.private_files import write_private

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


# A generated demo password: 12 URL-safe characters, enough for a local development account.
DEMO_PASSWORD_BYTES = 9


@dataclass(frozen=True)
class DemoAccount:
    """A demo account and whether this run created it (``password`` is ``None`` when it existed)."""

    username: str
    password: str | None
    is_staff: bool
    created: bool


def _credentials_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-credentials.json"


def _stored_passwords() -> dict[str, str]:
    path = _credentials_file()
    return json.loads(path.read_text()) if path.exists() else {}


def _roles() -> list[tuple[str, str, bool]]:
    """(role, username, is staff) of the demo trader and admin; usernames from env when set."""
    return [
        ("trader", os.environ.get("DEMO_TRADER_USERNAME", "trader"), False),
        ("admin", os.environ.get("DEMO_ADMIN_USERNAME", "admin"), True),
    ]


def _create_missing_accounts() -> list[DemoAccount]:
    """Create the demo accounts that do not exist; an existing one is never touched (its
    password and flags are its owner's). Passwords come from env, else from the credentials
    file, else are generated and kept there (0600 from its first byte)."""
    user_model = get_user_model()
    stored = _stored_passwords()
    kept = dict(stored)
    accounts = []
    for role, username, is_staff in _roles():
        if user_model.objects.filter(username=username).exists():
            accounts.append(DemoAccount(username, None, is_staff, created=False))
            continue
        password = os.environ.get(f"DEMO_{role.upper()}_PASSWORD")
        if not password:
            password = kept[role] = stored.get(role) or secrets.token_urlsafe(DEMO_PASSWORD_BYTES)
        user_model.objects.create_user(username, password=password, is_staff=is_staff, is_superuser=is_staff)
        accounts.append(DemoAccount(username, password, is_staff, created=True))
    if kept != stored:
        _credentials_file().parent.mkdir(parents=True, exist_ok=True)
        write_private(_credentials_file(), json.dumps(kept))
    return accounts


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
    return created, _create_missing_accounts()
