"""docs/upgrading.md followed on a running topology, from the previous release to this tree.

The previous release (tests/e2e/releases.py: the parent of the commit that added the newest
migration) is extracted with ``git archive`` and the whole topology of tests/e2e/topology.py
(HAProxy, two Daphne processes, two workers, beat, PostgreSQL, sharded Redis) starts from it,
on its own schema. Then the guide's sequence: ``migrate`` with the new code while the old
processes serve, each web process replaced and back in the balancer before the next, the
workers one by one, beat; then the rollback's first half: the workers, then one web process,
back on the old code (on the new schema). The API is checked in each mixed state (old code
on the new schema, new web processes on old workers, an old and a new web process). Clients
stay connected through the balancer all along; each must resume with no gap and no
duplicate. A second test checks the schema itself: every table and column the old models
use is still there after the newest migrations, and none they do not know would make their
INSERTs fail.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.e2e.client import ResumingClient
from tests.e2e.lifecycle import started
from tests.e2e.releases import (
    Release,
    extract,
    manage,
    missing_requirements,
    model_columns,
    newest_migration,
    previous_release,
    schema_columns,
    schema_problems,
)
from tests.e2e.stack import ROOT, TRADER, answers
from tests.e2e.topology import Topology
from tests.waiting import until, wait_until

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

SYMBOLS = ["AAPL", "BTC-USD", "EURUSD"]
WEBS = ["web1", "web2"]
WORKERS = ["w1", "w2"]
# Made by the old code's ORM once the new schema is in: its INSERT must work.
ADDED_BY_OLD_CODE = "UPGR"
ADD_SYMBOL_SCRIPT = f"""
from dashboard.models import Symbol
Symbol.objects.create(symbol={ADDED_BY_OLD_CODE!r}, name="Added during the upgrade", initial_price=50)
"""


@dataclass(frozen=True)
class OldRelease:
    """The previous release, extracted."""

    release: Release
    root: Path


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> OldRelease:
    release = previous_release()
    root = extract(release.commit, tmp_path_factory.mktemp("release") / release.commit[:10])
    missing = missing_requirements(root)
    assert not missing, (
        f"the previous release {release.commit[:10]} ({release.why}) needs what this virtualenv does not "
        f"install: {', '.join(missing)}; install it (.venv/bin/pip install ...) to run the upgrade test"
    )
    assert newest_migration().name not in {p.name for p in (root / "dashboard" / "migrations").iterdir()}, (
        "the previous release already has the newest migration"
    )
    logger.info("upgrading from %s (%s)", release.commit[:10], release.why)
    return OldRelease(release, root)


@pytest.fixture(scope="module")
def topology(old: OldRelease, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """The topology run from a link to the old release, as /srv/ticker is in the guide."""
    workdir = tmp_path_factory.mktemp("upgrade")
    link = workdir / "ticker"
    link.symlink_to(old.root)
    with started(Topology(workdir, code_root=link)) as running:
        for name in running.processes:
            if name != "haproxy":
                assert runs_release(running, name, old.root), name
        yield running


def switch(link: Path, release: Path) -> None:
    """Point ``link`` at ``release`` in one rename, as the guide's ``ln -sfn`` and ``mv -T`` do."""
    new = link.with_name(link.name + ".next")
    new.unlink(missing_ok=True)
    new.symlink_to(release)
    os.replace(new, link)


def runs_from(topology: Topology, name: str) -> Path:
    """The directory process ``name`` imports Ticker from: its working directory (``python -m``
    puts it first on sys.path; Celery imports the app from it), resolved when it started."""
    popen = topology.processes[name].popen
    assert popen is not None, name
    return Path(f"/proc/{popen.pid}/cwd").resolve()


def runs_release(topology: Topology, name: str, release: Path) -> bool:
    """Whether ``name`` runs from ``release``, once its starting shell has become the program
    (the `/bin/sh -c 'cd RELEASE && exec ...'` that starts it is first in the test's own
    directory: a read at once failed full runs now and then)."""
    wanted = release.resolve()
    wait_until(lambda: runs_from(topology, name) == wanted, 15, f"{name} to run from {wanted}")
    return True


def test_the_previous_release_runs_against_the_newest_schema(topology: Topology, old: OldRelease) -> None:
    """The old models' tables and columns, against a database migrated by this tree."""
    assert topology.postgres is not None
    url = topology.postgres.create_database("newest_schema")
    env = {**topology.env(), "DATABASE_URL": url}
    manage(ROOT, env, "migrate", "--noinput")
    models = model_columns(old.root, env)
    assert "dashboard_symbol" in models, models
    problems = schema_problems(models, schema_columns(url))
    assert problems == [], (
        f"the newest migrations are not ones the previous release ({old.release.commit[:10]}) runs against "
        "(docs/upgrading.md, 'Migrations the previous release runs against'):\n" + "\n".join(problems)
    )


def test_schema_problems_names_what_the_previous_release_would_trip_on() -> None:
    """The comparison itself, on made-up tables: each way a migration breaks old code."""
    models = {"shop": ["id", "name", "price"], "gone": ["id"]}
    schema = {
        # "price" dropped; "stock" NOT NULL with no default; "note" nullable; "size" with a default.
        "shop": {"id": True, "name": False, "stock": False, "note": True, "size": True},
    }
    assert schema_problems(models, schema) == [
        "table gone is gone (the previous release still reads it)",
        "column shop.price is gone (the previous release still reads it)",
        "column shop.stock is NOT NULL with no database default: the previous release's INSERTs "
        "leave it out and fail (give the field db_default=..., or null=True)",
    ]
    assert schema_problems({"shop": ["id", "name"]}, {"shop": {"id": True, "name": False, "note": True}}) == []


def api_get(topology: Topology, web: str, cookie: str, path: str) -> Any:
    """GET ``path`` from the web process ``web`` itself, as the balancer forwards a request (from
    a trusted proxy, over HTTPS), with the session ``cookie``; its JSON."""
    port = topology.web_ports[WEBS.index(web)]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        headers={"Cookie": cookie, "X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, f"{web} {path}: {response.status}"
        return json.loads(response.read())


def served_by(url: str, topology: Topology) -> str:
    request = urllib.request.Request(url)
    with urllib.request.urlopen(request, timeout=2, context=topology.ssl_context) as response:
        return response.headers.get("X-Served-By", "?")


def serves(topology: Topology, webs: list[str], symbols: list[str] = SYMBOLS) -> None:
    """The trader logs in through the balancer; each of ``webs`` then lists ``symbols`` with their
    quotes and answers an order book through the API (polled: a new symbol's first quote)."""
    cookie = topology.session(*TRADER).cookie_header()
    for web in webs:

        def listed(web: str = web) -> set[str]:
            listing = api_get(topology, web, cookie, "/api/symbols/")
            quoted = {s["symbol"] for s in listing["symbols"] if s["quote"] is not None}
            return quoted if set(symbols) <= quoted else set()

        wait_until(listed, 20, f"{web} to list {symbols} with quotes")
        book = api_get(topology, web, cookie, "/api/symbols/AAPL/depth/")
        assert book["bids"], f"{web}: {book}"
        assert book["asks"], f"{web}: {book}"


async def open_clients(topology: Topology, count: int) -> list[ResumingClient]:
    """``count`` clients through the balancer, until both web processes serve some."""
    headers = {"Cookie": topology.session().cookie_header(), "Origin": topology.base_url}
    opened: list[ResumingClient] = []
    while len(opened) < count or {c.servers[-1] for c in opened} != set(WEBS):
        assert len(opened) < count + 6, "the balancer never used both web processes"
        client = ResumingClient(f"{topology.ws_url}/ws/stream/", headers, SYMBOLS, ssl=topology.ssl_context)
        client.start()
        await asyncio.wait_for(client.connected.wait(), 10)
        opened.append(client)
    return opened


async def new_stream(topology: Topology) -> ResumingClient:
    """One more client, logged in now, through the balancer; once it has every symbol's ticks."""
    headers = {"Cookie": topology.session().cookie_header(), "Origin": topology.base_url}
    client = ResumingClient(f"{topology.ws_url}/ws/stream/", headers, SYMBOLS, ssl=topology.ssl_context)
    client.start()
    await asyncio.wait_for(client.connected.wait(), 10)
    await until(lambda: {s for s, _, _ in client.ticks} >= set(SYMBOLS), 15, "a new stream's ticks")
    return client


async def ticking(clients: list[ResumingClient], after: float, timeout: float = 15) -> None:
    for client in clients:
        await client.wait_for(lambda f: f["type"] == "ticks" and bool(f["data"]), timeout=timeout, after=after)


def restart(topology: Topology, name: str, release: Path) -> int:
    """Stop ``name`` and start it again through the link, which points at ``release``; returns
    when it had stopped (ms since the epoch)."""
    assert topology.code_root.resolve() == release.resolve(), "the link points at the release"
    topology.processes[name].stop()
    stopped_ms = time.time_ns() // 1_000_000
    topology.start_process(name)
    assert runs_release(topology, name, release), f"{name} runs the release the link points at"
    return stopped_ms


def roll_web(topology: Topology, name: str, release: Path) -> float:
    """The guide's step for one web process: stop it (it drains), start it again (``release``),
    wait for its /readyz, then for the balancer to send it requests."""
    started_at = time.monotonic()
    port = topology.web_ports[WEBS.index(name)]
    restart(topology, name, release)
    wait_until(lambda: answers(f"http://127.0.0.1:{port}/readyz"), 30, f"{name}'s /readyz")
    # leastconn: with no stream on it yet, the balancer's next request goes to it once it is up.
    wait_until(lambda: served_by(f"{topology.base_url}/healthz", topology) == name, 15, f"the balancer to use {name}")
    return time.monotonic() - started_at


def lease_pids(topology: Topology) -> dict[int, int]:
    market = redis.Redis.from_url(topology.redis_servers[0].url)
    pids: dict[int, int] = {}
    for key in market.scan_iter("ticker:lease:*"):
        owner = market.get(key)
        if owner:
            pid = int(owner.decode().split(":")[1])
            pids[pid] = pids.get(pid, 0) + 1
    return pids


def roll_worker(topology: Topology, name: str, release: Path) -> float:
    """Restart a worker (its leases are released, or expire) on ``release`` and wait until its
    producer holds symbols again."""
    started_at = time.monotonic()
    restart(topology, name, release)
    popen = topology.processes[name].popen
    assert popen is not None
    wait_until(lambda: lease_pids(topology).get(popen.pid, 0) > 0, 30, f"{name}'s producer to hold a symbol")
    return time.monotonic() - started_at


def roll_beat(topology: Topology, release: Path) -> float:
    """Restart beat on ``release`` and wait for its first housekeeping: a 5 s candle that closed
    after the old beat stopped reaches the database (flushed every 2 s)."""
    started_at = time.monotonic()
    stopped_ms = restart(topology, "beat", release)

    def flushed_since_stop() -> bool:
        with psycopg.connect(topology.database_url) as conn:
            row = conn.execute(
                "SELECT 1 FROM dashboard_candle WHERE interval = '5s' AND start_ms + 5000 > %s LIMIT 1", [stopped_ms]
            ).fetchone()
        return row is not None

    wait_until(flushed_since_stop, 30, "the new beat's first candle flush", interval=0.2)
    return time.monotonic() - started_at


def silences(steps: Steps, clients: list[ResumingClient]) -> dict[str, float]:
    """Per step, the longest time a client went without a ticks frame, counted in the step it
    began in (a client's own first frame starts its count)."""
    longest: dict[str, float] = {}
    for client in clients:
        arrivals = [client.frames[0][0]] + [t for t, f in client.frames if f["type"] == "ticks"]
        for a, b in itertools.pairwise(arrivals):
            step = steps.during(a)
            longest[step] = max(longest.get(step, 0.0), b - a)
    return {step: round(seconds, 2) for step, seconds in longest.items()}


def longest_pause(clients: list[ResumingClient], symbol: str) -> float:
    """The longest gap between consecutive ticks of ``symbol`` (their own timestamps), in s."""
    ts = sorted({tick["ts"] for c in clients for (s, _, _), tick in c.ticks.items() if s == symbol})
    return max((b - a for a, b in itertools.pairwise(ts)), default=0) / 1000


def assert_continuous(clients: list[ResumingClient]) -> None:
    for client in clients:
        assert client.gaps == [], f"gaps: {client.gaps[:5]}"
        assert client.duplicates == [], f"duplicates: {client.duplicates[:5]}"
        for symbol in SYMBOLS:
            epochs = {e for s, e, _ in client.ticks if s == symbol}
            assert len(epochs) == 1, f"{symbol}: its series restarted ({epochs})"
            seqs = sorted(q for s, _, q in client.ticks if s == symbol)
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{symbol}: not contiguous"


@dataclass
class Steps:
    """When each step of the upgrade ran, to say which one a client's longest silence fell in."""

    began: float = field(default_factory=time.monotonic)
    spans: list[tuple[str, float, float]] = field(default_factory=list)

    async def run(self, name: str, function: Callable[..., object], *args: object) -> None:
        started_at = time.monotonic()
        await asyncio.to_thread(function, *args)
        self.spans.append((name, started_at, time.monotonic()))

    def during(self, moment: float) -> str:
        """The step running at ``moment``, or the last one before it (a step lasts until the next)."""
        begun = [name for name, a, _ in self.spans if a <= moment]
        return begun[-1] if begun else "before the first step"

    def __str__(self) -> str:
        return ", ".join(f"{name} {b - a:.2f} s" for name, a, b in self.spans)


async def test_a_rolling_upgrade_from_the_previous_release(topology: Topology, old: OldRelease) -> None:
    env = topology.env()
    steps = Steps()
    clients = await open_clients(topology, 4)
    try:
        await ticking(clients, time.monotonic())
        await steps.run("old release serves", serves, topology, WEBS)

        # The guide's step 2: migrate with the new code while the old release serves (its step 1,
        # the new release beside the old, is this tree beside the extracted one).
        pending = manage(ROOT, env, "showmigrations", "dashboard")
        assert f"[ ] {newest_migration().stem}" in pending, pending
        await steps.run("migrate", manage, ROOT, env, "migrate", "--noinput")
        _, migrate_started, migrated = steps.spans[-1]
        await ticking(clients, migrated)
        for client in clients:
            assert not [d for d in client.drops if d >= migrate_started], "a stream closed during migrate"

        # The old code on the new schema: it serves, opens new streams, and its ORM still inserts.
        await steps.run("old release serves on the new schema", serves, topology, WEBS)
        clients.append(await new_stream(topology))
        await steps.run("old ORM inserts a symbol", manage, old.root, env, "shell", "-c", ADD_SYMBOL_SCRIPT)

        # Step 3: the link to the new release; nothing restarts, the old processes keep serving.
        switch(topology.code_root, ROOT)
        assert {runs_from(topology, n) for n in [*WEBS, *WORKERS, "beat"]} == {old.root.resolve()}

        # Step 4: one web process at a time, each back in the balancer before the next.
        for name in WEBS:
            others = [c for c in clients if c.servers[-1] != name]
            stopped = time.monotonic()
            await steps.run(f"restart {name}", roll_web, topology, name, ROOT)
            for client in others:
                assert not [d for d in client.drops if d >= stopped], f"a client of another process dropped ({name})"
            await until(lambda: all(c.connected.is_set() for c in clients), 15, "every client to reconnect")
            await ticking(clients, time.monotonic())

        # New web processes on old workers: they read what the old release writes to Valkey.
        await steps.run("new web, old workers serve", serves, topology, WEBS)

        # Then the workers one by one, then beat.
        for name in WORKERS:
            await steps.run(f"restart {name}", roll_worker, topology, name, ROOT)
            await ticking(clients, time.monotonic())
        await steps.run("restart beat", roll_beat, topology, ROOT)

        # The new release serves, the symbol the old code added included.
        await steps.run("new release serves", serves, topology, WEBS, [*SYMBOLS, ADDED_BY_OLD_CODE])
        await ticking(clients, time.monotonic())
        upgraded = time.monotonic()
        assert_continuous(clients)
        reconnects = [len(c.drops) for c in clients]
        assert max(reconnects) <= len(WEBS), f"reconnects per client: {reconnects}"
        report(steps, clients, old, "upgrade", upgraded)

        # Rollback, the cheap half: the link back, the workers, then one web process, on the
        # old code on the new schema (the other web process stays new).
        switch(topology.code_root, old.root)
        for name in WORKERS:
            await steps.run(f"rollback {name}", roll_worker, topology, name, old.root)
            await ticking(clients, time.monotonic())
        await steps.run("new web, old workers serve again", serves, topology, WEBS)
        await steps.run("rollback web1", roll_web, topology, "web1", old.root)
        await steps.run("old and new web serve", serves, topology, WEBS)
        fresh = await new_stream(topology)
        clients.append(fresh)
        assert fresh.servers == ["web1"], "leastconn sends a new stream to the process with none"
        await until(lambda: all(c.connected.is_set() for c in clients), 15, "every client to reconnect")
        await ticking(clients, time.monotonic())
        assert_continuous(clients)
        report(steps, clients, old, "upgrade and rollback", time.monotonic())
    finally:
        for client in clients:
            await client.stop()


def report(steps: Steps, clients: list[ResumingClient], old: OldRelease, what: str, ended: float) -> None:
    """Log the figures of docs/upgrading.md, and hold the symbols' pauses to a bound."""
    pauses = {s: longest_pause(clients, s) for s in SYMBOLS}
    logger.info(
        "%s from %s: %s; reconnects per client %s; longest time a client went without ticks, by step: %s; "
        "longest pause per symbol (tick time) %s s; %.1f s in all",
        what,
        old.release.commit[:10],
        steps,
        [len(c.drops) for c in clients],
        silences(steps, clients),
        {s: round(p, 2) for s, p in pauses.items()},
        ended - steps.began,
    )
    # A stopped worker's symbols move within the lease time (3 s), even when it cannot release them.
    assert max(pauses.values()) < 6, pauses
