"""The whole stack as `make run` starts it: login, both streams, the worker's ticks, beat."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dashboard.market.store import read_quotes
from tests.e2e.stack import Stack
from tests.waiting import until, wait_until

pytestmark = pytest.mark.e2e


async def frames_until(ws, frame_type: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {frame_type} frame within {timeout} s"
        frame = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        if frame["type"] == frame_type:
            return frame


async def ticks(ws, count: int, timeout: float = 15.0) -> list[dict]:
    received: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(received) < count:
        frame = await frames_until(ws, "ticks", max(deadline - time.monotonic(), 0.01))
        received += frame["data"]
    return received


def contiguous(received: list[dict], symbol: str, after: int) -> list[int]:
    seqs = [t["seq"] for t in received if t["symbol"] == symbol]
    assert seqs, f"no {symbol} ticks"
    assert seqs == list(range(after + 1, after + 1 + len(seqs))), f"{symbol} seqs not contiguous: {seqs}"
    return seqs


def test_root_redirects_to_login(stack_logs: Stack) -> None:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(f"{stack_logs.base_url}/", timeout=5)
    assert caught.value.code == 302
    assert caught.value.headers["Location"].startswith("/accounts/login/")


async def test_dashboard_stream_delivers_contiguous_ticks(stack_logs: Stack) -> None:
    cookie = stack_logs.login()
    headers = {"Cookie": cookie, "Origin": stack_logs.base_url}
    async with connect(f"{stack_logs.ws_url}/ws/stream/", additional_headers=headers) as ws:
        hello = await frames_until(ws, "hello")
        assert len(hello["symbols"]) >= 12
        assert {s["asset_class"] for s in hello["symbols"]} == {"equity", "crypto", "fx"}
        await ws.send(json.dumps({"op": "subscribe", "id": 1, "symbols": ["AAPL", "BTC-USD", "EURUSD"]}))
        ack = await frames_until(ws, "ack")
        assert ack["id"] == 1
        snapshots = {}
        for _ in range(3):
            snap = await frames_until(ws, "snapshot")
            snapshots[snap["symbol"]] = snap
        received = await ticks(ws, 40)
        for symbol, snap in snapshots.items():
            assert snap["epoch"], "the worker's producer has started this series"
            contiguous(received, symbol, snap["seq"])


async def test_symbol_stream_delivers_contiguous_ticks(stack_logs: Stack) -> None:
    cookie = stack_logs.login()
    headers = {"Cookie": cookie, "Origin": stack_logs.base_url}
    async with connect(f"{stack_logs.ws_url}/ws/symbols/BTC-USD/", additional_headers=headers) as ws:
        await frames_until(ws, "hello")
        snap = await frames_until(ws, "snapshot")
        assert snap["symbol"] == "BTC-USD"
        assert snap["quote"]["price"] > 0
        received = await ticks(ws, 15)
        assert {t["symbol"] for t in received} == {"BTC-USD"}
        contiguous(received, "BTC-USD", snap["seq"])


async def test_socket_without_session_is_closed_4401(stack_logs: Stack) -> None:
    async with connect(f"{stack_logs.ws_url}/ws/stream/", additional_headers={"Origin": stack_logs.base_url}) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 4401


@pytest.mark.parametrize("foreign", ["http://evil.example", "another port", "https"])
async def test_foreign_origin_is_refused(stack_logs: Stack, foreign: str) -> None:
    cookie = stack_logs.login()
    parts = urlsplit(stack_logs.base_url)
    origin = {
        "another port": f"http://{parts.hostname}:{parts.port + 1}",
        "https": f"https://{parts.netloc}",
    }.get(foreign, foreign)
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{stack_logs.ws_url}/ws/stream/", additional_headers={"Cookie": cookie, "Origin": origin}):
            pass
    assert refused.value.response.status_code == 403


def test_beat_schedules_the_watchdog_on_the_worker(stack_logs: Stack) -> None:
    market = stack_logs.market()
    first = wait_until(lambda: market.get("ticker:watchdog:last_run_ms"), 20, "beat's first watchdog run")
    wait_until(lambda: (market.get("ticker:watchdog:last_run_ms") or b"0") > first, 20, "beat's next watchdog run")
    assert all(p.alive() for p in stack_logs.processes.values())


def test_probes_on_the_running_stack(stack_logs: Stack) -> None:
    from tests.e2e.stack import ADMIN

    with urllib.request.urlopen(f"{stack_logs.base_url}/readyz", timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"status": "ready"}, "the details are for staff and balancers"
    body = json.loads(stack_logs.session(*ADMIN).get("/readyz"))
    assert body["status"] == "ready"
    assert body["checks"]["producer"]["last_window_age_ms"] < 5000
    with urllib.request.urlopen(f"{stack_logs.base_url}/healthz", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok"}


async def test_metrics_aggregate_web_and_worker_processes(stack_logs: Stack) -> None:
    from tests.e2e.client import Recorder
    from tests.e2e.stack import ADMIN

    headers = {"Cookie": stack_logs.login(), "Origin": stack_logs.base_url}
    async with Recorder(f"{stack_logs.ws_url}/ws/stream/", headers, subscribe=["AAPL"]) as rec:
        await rec.wait_for(lambda f: f["type"] == "ticks", timeout=10)
        admin = stack_logs.session(*ADMIN)
        text = admin.get("/metrics")

    def value(name: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(name) and not line.startswith("#")]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    assert value("ticker_producer_ticks_total") > 0, "the worker's counters reach the web process's /metrics"
    assert value('ticker_connections_open{endpoint="stream"}') >= 1
    assert value('ticker_ticks_sent_total{endpoint="stream"}') > 0


MISSED = 4  # ticks the reconnecting client misses, at least


async def seq_reached(market: redis.Redis, symbol: str, seq: int) -> bool:
    """Whether the producer has stored ``symbol``'s tick ``seq`` (read off the loop's thread)."""
    quotes = await asyncio.to_thread(read_quotes, market, [symbol])
    return quotes[symbol].seq >= seq


async def test_reconnect_with_since_gets_exactly_the_missed_ticks(stack_logs: Stack) -> None:
    from tests.e2e.client import Recorder

    headers = {"Cookie": stack_logs.login(), "Origin": stack_logs.base_url}
    url = f"{stack_logs.ws_url}/ws/stream/"
    async with Recorder(url, headers, subscribe=["BTC-USD"]) as first:
        _, snapshot = await first.wait_for(lambda f: f["type"] == "snapshot", timeout=10)
        await first.wait_for(lambda f: f["type"] == "ticks", timeout=10)
        last = first.ticks("BTC-USD")[-1][1]["seq"]
    # The market moves on while the client is away: at least MISSED more BTC-USD ticks.
    market = stack_logs.market()
    await until(lambda: seq_reached(market, "BTC-USD", last + MISSED), 15, f"{MISSED} BTC-USD ticks after seq {last}")
    async with Recorder(url, headers) as second:
        since = {"BTC-USD": {"epoch": snapshot["epoch"], "seq": last}}
        await second.send({"op": "subscribe", "id": 2, "symbols": ["BTC-USD"], "since": since})
        _, recovered = await second.wait_for(lambda f: f["type"] == "ticks", timeout=10)
        assert recovered["recovered"] is True
        missed = [t["seq"] for t in recovered["data"]]
        assert missed == list(range(last + 1, last + 1 + len(missed)))
        assert len(missed) >= MISSED, "every tick produced while the client was away"
        assert [f for _, f in second.frames if f["type"] == "snapshot"] == []
        await second.wait_for(lambda f: f["type"] == "ticks" and not f.get("recovered"), timeout=5)
        live = [t["seq"] for _, t in second.ticks("BTC-USD")]
        assert live == list(range(last + 1, last + 1 + len(live))), "live ticks continue the recovered ones"
