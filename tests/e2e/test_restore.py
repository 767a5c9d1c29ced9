"""docs/operations.md's backup and restore, followed on real PostgreSQL servers and processes.

Before: a PostgreSQL server with Ticker's data (a trader with a password, a session, a
preference, an admin-edited symbol, an API token, an alert, a watchlist, stored candles),
written by the application's own services while a Redis runs beside it. Then the backup
(``pg_dump`` with the options the page gives), both servers lost, and the restore on a
fresh server: ``pg_restore`` (likewise), ``migrate`` (nothing to apply), a fresh Redis,
web and worker started against them. After: the trader logs in, the old session still
opens the dashboard (same ``SECRET_KEY``: the environment file is part of the backup), the
token authenticates API calls and writes, alert, watchlist, symbol, preference and candles
are there, and the market ticks from the restored history.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client

from tests.e2e.client import Recorder
from tests.e2e.lifecycle import started
from tests.e2e.stack import ROOT, TRADER, HttpSession, Process, answers, process_env, procfile_commands, tail_logs
from tests.postgres_server import PostgresServer, postgres_bin_dir
from tests.waiting import wait_until
from ticker.embedded_redis import EmbeddedRedis, free_port

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

SECRET_KEY = "restore-test-key-" + "Pl0kIj9UhYg7TfRd" * 3
EDITED_NAME = "Restored Alpha (edited in the admin)"
STORED_CLOSE = 150.0  # RSTA's stored candles close here; its initial price is 100
STORED_MINUTES = 10
ALERT_PRICE = 1_000_000  # never reached: the alert must still be waiting after the restore

# Run by manage.py against the database to back up; prints what the checks need.
POPULATE = """
import json, time
from decimal import Decimal
from django.contrib.auth import get_user_model
from django.test import Client
from dashboard import alert_services, tokens, watchlists
from dashboard.models import Candle, Preference, Symbol

trader = get_user_model().objects.create_user({username!r}, password={password!r})
Preference.objects.create(user=trader, palette="cb")
alpha = Symbol.objects.create(symbol="RSTA", name="Restored Alpha", initial_price=100)
Symbol.objects.create(symbol="RSTB", name="Restored Beta", initial_price=50)
# The admin's edit: a new name, a calmer market (the restored price must stay near its close).
alpha.name, alpha.volatility, alpha.jump_intensity = {edited!r}, 0.02, 0.0
alpha.save()
minute = time.time_ns() // 1_000_000 // 60_000 * 60_000
Candle.objects.bulk_create(
    Candle(symbol=alpha, interval="1m", start_ms=minute - i * 60_000, open={close}, high={close} + 0.5,
           low={close} - 0.5, close={close}, volume=10)
    for i in range(1, {minutes} + 1)
)
token = tokens.create(trader, "backup check", expires_in_days=30)
alert = alert_services.create(trader, "RSTA", "above", price=Decimal({alert_price}))
watchlists.create(trader, "Restored list", ["RSTB", "RSTA"])
client = Client()
client.force_login(trader, backend="django.contrib.auth.backends.ModelBackend")
print(json.dumps({{"token": token.secret, "alert": alert.pk, "session": client.cookies["sessionid"].value,
                  "candles": [minute - i * 60_000 for i in range({minutes}, 0, -1)]}}))
"""


def documented_options(program: str) -> list[str]:
    """The options docs/operations.md gives ``program`` (its first use there), without the
    file and database ones, which the test supplies: the test runs what the page says."""
    text = (ROOT / "docs" / "operations.md").read_text()
    found = re.search(rf"{program}((?: --[a-z-]+(?:=[^\s`]+)?)+)", text)
    assert found, f"docs/operations.md shows {program}"
    options = found.group(1).split()
    return [o for o in options if not o.startswith(("--file=", "--dbname="))]


def pg_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One of the PostgreSQL client programs beside the server binaries (Debian's)."""
    return subprocess.run([str(postgres_bin_dir() / name), *args], check=True, capture_output=True, text=True)


@dataclass
class Restore:
    """The whole procedure, with what it produced and how long its steps took."""

    workdir: Path
    port: int = field(default_factory=free_port)
    figures: dict[str, float] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)
    migrate_output: str = ""
    servers: list[PostgresServer | EmbeddedRedis] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, database_url: str, redis: EmbeddedRedis) -> dict[str, str]:
        return process_env(
            self.workdir,
            REDIS_URL=redis.url,
            DATABASE_URL=database_url,
            SECRET_KEY=SECRET_KEY,
            PORT=str(self.port),
            # History generated for RSTB (no stored candles): an hour is enough here.
            TICKER_BACKFILL_HOURS="1",
        )

    def _server(self, server: PostgresServer | EmbeddedRedis) -> Any:
        self.servers.append(server)
        server.start()
        return server

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        manage = [sys.executable, str(ROOT / "manage.py")]
        old_db = self._server(PostgresServer())
        old_redis = self._server(EmbeddedRedis(free_port(), self.workdir / "redis-old", persist=False))
        env = self.env(old_db.create_database("ticker"), old_redis)
        subprocess.run([*manage, "migrate", "--noinput"], env=env, cwd=ROOT, check=True, capture_output=True)
        script = POPULATE.format(
            username=TRADER[0],
            password=TRADER[1],
            edited=EDITED_NAME,
            close=STORED_CLOSE,
            minutes=STORED_MINUTES,
            alert_price=ALERT_PRICE,
        )
        done = subprocess.run(
            [*manage, "shell", "-c", script], env=env, cwd=ROOT, check=True, capture_output=True, text=True
        )
        self.before = json.loads(done.stdout.strip().splitlines()[-1])
        self._restore(self._back_up(old_db, old_redis))

    def _back_up(self, old_db: PostgresServer, old_redis: EmbeddedRedis) -> Path:
        """The backup, as docs/operations.md has it; then both servers are lost."""
        dump = self.workdir / "ticker.dump"
        began = time.monotonic()
        pg_tool("pg_dump", *documented_options("pg_dump"), f"--file={dump}", old_db.url("ticker"))
        self.figures["pg_dump_s"] = time.monotonic() - began
        self.figures["dump_kib"] = dump.stat().st_size / 1024
        old_db.stop()
        old_redis.stop()
        return dump

    def _restore(self, dump: Path) -> None:
        """On a fresh server, with a fresh (empty) Redis: restore, migrate, web and worker."""
        manage = [sys.executable, str(ROOT / "manage.py")]
        began = time.monotonic()
        new_db = self._server(PostgresServer())
        database_url = new_db.create_database("ticker")
        pg_tool("pg_restore", *documented_options("pg_restore"), f"--dbname={database_url}", str(dump))
        self.figures["pg_restore_s"] = time.monotonic() - began
        redis = self._server(EmbeddedRedis(free_port(), self.workdir / "redis-new", persist=False))
        env = self.env(database_url, redis)
        migrated = subprocess.run(
            [*manage, "migrate", "--noinput"], env=env, cwd=ROOT, check=True, capture_output=True, text=True
        )
        self.migrate_output = migrated.stdout
        commands = procfile_commands()
        for name in ("web", "worker"):
            process = Process(name, ["/bin/sh", "-c", f"exec {commands[name]}"], self.workdir / f"{name}.log")
            self.processes.append(process)
            process.start(env)
        wait_until(lambda: answers(f"{self.base_url}/accounts/login/"), 30, "Daphne on the restored database")
        self.figures["restore_to_serving_s"] = time.monotonic() - began
        market = redis_client.Redis.from_url(redis.url, socket_timeout=5)
        wait_until(lambda: market.exists("ticker:state:RSTA", "ticker:state:RSTB") == 2, 60, "both series to start")
        self.figures["restore_to_ticking_s"] = time.monotonic() - began

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        for server in reversed(self.servers):
            server.stop()

    def logs(self) -> str:
        return tail_logs(self.processes)

    def api(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """An API call with the restored token (a POST when ``body`` is given)."""
        request = urllib.request.Request(
            f"{self.base_url}/api{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.before['token']}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restore]:
    with started(Restore(tmp_path_factory.mktemp("restore"))) as running:
        yield running
        logger.info("backup and restore: %s", running.figures)


def test_migrate_after_the_restore_has_nothing_to_apply(restored: Restore) -> None:
    assert "No migrations to apply." in restored.migrate_output, restored.migrate_output


def test_the_trader_logs_in_and_the_old_session_still_opens_the_dashboard(restored: Restore) -> None:
    page = HttpSession.logged_in(restored.base_url, *TRADER).get("/")
    assert 'data-palette="cb"' in page, "the trader's preference was restored"
    request = urllib.request.Request(
        f"{restored.base_url}/", headers={"Cookie": f"sessionid={restored.before['session']}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.url == f"{restored.base_url}/", "the session made before the backup, not the login page"
        assert f'<span class="username">{TRADER[0]}</span>' in response.read().decode()


def test_the_token_alert_watchlist_symbols_and_candles_are_there(restored: Restore) -> None:
    _, alerts = restored.api("/alerts/")
    assert [(a["id"], a["symbol"], a["price"], a["triggered_at"]) for a in alerts["alerts"]] == [
        (restored.before["alert"], "RSTA", ALERT_PRICE, None)
    ]
    _, lists = restored.api("/watchlists/")
    assert [(w["name"], w["symbols"]) for w in lists["watchlists"]] == [("Restored list", ["RSTB", "RSTA"])]
    _, catalog = restored.api("/symbols/")
    names = {s["symbol"]: s["name"] for s in catalog["symbols"]}
    assert names == {"RSTA": EDITED_NAME, "RSTB": "Restored Beta"}
    _, history = restored.api("/symbols/RSTA/candles/?interval=1m")
    # The rows themselves (generated history would have candles at these times too, not these).
    stored = [(c["ts"], c["close"], c["volume"]) for c in history["candles"] if c["ts"] in restored.before["candles"]]
    assert stored == [(ts, STORED_CLOSE, 10) for ts in restored.before["candles"]], "the restored candles are served"
    # The sequences came back with the rows: a new alert gets an id of its own.
    status, created = restored.api("/alerts/", {"symbol": "RSTB", "condition": "below", "price": "1"})
    assert status == 201
    assert created["id"] > restored.before["alert"], created


async def test_the_market_ticks_on_from_the_restored_history(restored: Restore) -> None:
    session = HttpSession.logged_in(restored.base_url, *TRADER)
    headers = {"Cookie": session.cookie_header(), "Origin": restored.base_url}
    async with Recorder(f"ws://127.0.0.1:{restored.port}/ws/stream/", headers, subscribe=["RSTA", "RSTB"]) as rec:
        # A fresh Redis: new epochs, generated from the restored rows (RSTA from its last close).
        _, tick = await rec.wait_for_tick("RSTA", lambda t: True, timeout=60, after=0)
        await rec.wait_for_tick("RSTB", lambda t: True, timeout=60, after=0)
    assert abs(tick["price"] - STORED_CLOSE) / STORED_CLOSE < 0.05, (
        f"RSTA resumed at {tick['price']}, not near its close"
    )
