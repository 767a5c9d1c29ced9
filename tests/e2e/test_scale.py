"""The scaled-out deployment: identical series on every Daphne, failover through the balancer."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from tests.e2e import rolling
from tests.e2e.client import ResumingClient
from tests.e2e.lifecycle import started
from tests.e2e.stack import ADMIN
from tests.e2e.topology import FIRST_ADMIN, Topology
from tests.waiting import until, wait_until

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

SYMBOLS = ["AAPL", "BTC-USD", "EURUSD"]


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with started(Topology(tmp_path_factory.mktemp("scale"))) as running:
        yield running


@pytest.fixture
async def clients(topology: Topology) -> AsyncIterator[list[ResumingClient]]:
    """Clients through the balancer until both Daphne processes serve some."""
    headers = {"Cookie": topology.session().cookie_header(), "Origin": topology.base_url}
    opened: list[ResumingClient] = []
    try:
        while {c.servers[0] for c in opened} != {"web1", "web2"}:
            assert len(opened) < 8, "the balancer never used both Daphne processes"
            client = ResumingClient(f"{topology.ws_url}/ws/stream/", headers, SYMBOLS, ssl=topology.ssl_context)
            client.start()
            await asyncio.wait_for(client.connected.wait(), 10)
            opened.append(client)
        yield opened
    finally:
        for client in opened:
            await client.stop()


async def until_ticking(clients: list[ResumingClient], seconds: float) -> None:
    after = time.monotonic() + seconds
    for client in clients:
        await client.wait_for(lambda f: f["type"] == "ticks", timeout=seconds + 10, after=after)


async def test_admin_changes_reach_clients_on_every_process(topology: Topology, clients: list[ResumingClient]) -> None:
    admin = topology.session(*ADMIN)
    changelist = "/admin/dashboard/symbol/"
    pk = admin.get(changelist + "?q=JPM").split('name="_selected_action" value="')[1].split('"')[0]
    sent = time.monotonic()
    admin.post_form(changelist, {"action": "halt", "_selected_action": [pk]})

    def jpm_halted(frame: dict) -> bool:
        return frame["type"] == "symbols" and any(
            s["symbol"] == "JPM" and s["status"] == "halted" for s in frame["symbols"]
        )

    try:
        for client in clients:
            arrived, _ = await client.wait_for(jpm_halted, timeout=5, after=sent)
            assert arrived - sent <= 2.0
    finally:
        admin.post_form(changelist, {"action": "resume", "_selected_action": [pk]})


async def test_every_process_serves_the_same_series_and_survives_a_daphne_kill(
    topology: Topology, clients: list[ResumingClient]
) -> None:
    await until_ticking(clients, 2)
    # Identical (symbol, epoch, seq) series on both Daphne processes.
    for symbol in SYMBOLS:
        series = [{k[2]: (t["ts"], t["price"]) for k, t in c.ticks.items() if k[0] == symbol} for c in clients]
        common = set.intersection(*(set(s) for s in series))
        assert len(common) >= 3, f"{symbol}: clients saw overlapping ticks"
        for seq in common:
            assert len({s[seq] for s in series}) == 1, f"{symbol} seq {seq} differs between processes"

    # Kill one Daphne: its clients reconnect through the balancer and resume with no gap.
    victim = topology.processes["web1"]
    moved = [c for c in clients if c.servers[-1] == "web1"]
    assert victim.popen is not None
    killed_at = time.monotonic()
    os.kill(victim.popen.pid, signal.SIGKILL)
    victim.popen.wait()
    reconnects = []
    for client in moved:
        await until(lambda c=client: reconnected(c, killed_at), 15, "a moved client to reconnect")
        arrived, _ = await client.wait_for(lambda f: f["type"] == "ticks", timeout=10, after=killed_at)
        reconnects.append(arrived - killed_at)
        assert client.servers[-1] == "web2"
    logger.info("clients back through the balancer %.2f s (max) after kill -9 of their Daphne", max(reconnects))
    await until_ticking(clients, 1)
    for client in clients:
        assert client.gaps == [], f"gaps after failover: {client.gaps[:5]}"
        assert client.duplicates == []
        for symbol in SYMBOLS:
            seqs = sorted(k[2] for k in client.ticks if k[0] == symbol)
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{symbol}: contiguous across the failover"
    victim.popen = None
    # Put it back for the tests that follow (the balancer's health check lets it in).
    await asyncio.to_thread(topology.restart_web, 1)


def reconnected(client: ResumingClient, after: float) -> bool:
    """Dropped at or after ``after`` and connected again since."""
    return bool(client.drops and client.drops[-1] >= after and client.connected.is_set())


def test_the_first_admin_of_the_guide_reaches_the_admin_through_the_balancer(topology: Topology) -> None:
    admin = topology.session(*FIRST_ADMIN)
    page = admin.get("/admin/dashboard/symbol/")
    assert "AAPL" in page, "load_demo --symbols-only made the market; createsuperuser the admin"
    assert admin.last_url.startswith("https://"), "served over TLS with DEBUG=0"


def test_the_two_workers_share_the_market_evenly(topology: Topology) -> None:
    market = redis.Redis.from_url(topology.redis_servers[0].url)

    def split() -> list[int]:
        owners = [market.get(key) for key in market.scan_iter("ticker:lease:*")]
        counts: dict[bytes, int] = {}
        for owner in owners:
            counts[owner] = counts.get(owner, 0) + 1
        return sorted(counts.values())

    # 14 demo symbols over 2 live producers: 7 each (leases move one per acquire round).
    wait_until(lambda: split() == [7, 7], 30, "an even split of the leases")


ROLLING_CLIENTS = 200
ROLLING_USERS = 20  # 10 streams each: under the per-user limit (20) on any one process
ROLLING_SYMBOLS = ["BTC-USD", "NVDA", "ETH-USD", "AAPL", "EURUSD"]


async def test_a_rolling_restart_goes_unnoticed(topology: Topology) -> None:
    """Both web processes replaced in place, then both workers restarted, under 200 clients."""
    password = "rolling-pass-1"
    names = [f"rolling{i:02d}" for i in range(ROLLING_USERS)]
    await asyncio.to_thread(rolling.create_users, topology, names, password)
    cookies = [await asyncio.to_thread(lambda n=n: topology.session(n, password).cookie_header()) for n in names]
    clients = [
        ResumingClient(
            f"{topology.ws_url}/ws/stream/",
            {"Cookie": cookies[i % ROLLING_USERS], "Origin": topology.base_url},
            ROLLING_SYMBOLS,
            ssl=topology.ssl_context,
            local_host=f"127.0.1.{i + 1}",
        )
        for i in range(ROLLING_CLIENTS)
    ]
    watch = rolling.Watch(clients)
    groups: list[int] = []
    try:
        for client in clients:
            client.start()
        await until(lambda: all(c.connected.is_set() for c in clients), 60, "200 clients connected")
        split = Counter(c.servers[0] for c in clients)
        assert set(split) == {"web1", "web2"}, split
        await until_ticking(clients, 1)
        began_ms = rolling.now_ms()
        watch.start()
        for index in (1, 2):
            groups.append(await rolling.reload_web(topology, index))
            await until(lambda: all(c.connected.is_set() for c in clients), 30, "every client back")
        for name in ("w1", "w2"):
            await rolling.restart_worker(topology, name)
        await until_ticking(clients, 2)
        await watch.stop()

        reconnects = Counter(len(c.servers) - 1 for c in clients)
        silence = rolling.longest_silence_ms(clients, began_ms)
        logger.info(
            "rolling restart: split %s, reconnects per client %s, at most %d of %d disconnected at once "
            "(%d samples), longest silence per symbol %s ms",
            dict(split),
            dict(reconnects),
            watch.most_disconnected,
            ROLLING_CLIENTS,
            watch.samples,
            silence,
        )
        for client in clients:
            assert client.gaps == [], client.gaps[:5]
            assert client.duplicates == []
            assert set(client.close_codes) <= {1012}, client.close_codes
        assert max(reconnects) <= 1, f"a client reconnected more than once: {reconnects}"
        assert watch.most_disconnected <= ROLLING_CLIENTS // 2
        # A tick every 150-250 ms: more than 1 s on top of that is a symbol that stopped.
        assert max(silence.values()) <= 1250, silence
    finally:
        await watch.stop()
        for client in clients:
            await client.stop()
        await rolling.stop_groups(groups, topology.web_ports[: len(groups)])
        for index in range(1, len(groups) + 1):
            await asyncio.to_thread(topology.restart_web, index)
