"""The floor's producer side of the book channels (``bench/floor.py``): the same entries Ticker's producer sends.

Driven without Redis or sockets: a ``FloorSeries`` ticks and closes windows, and a web
process's ``BookReplicas`` fed its entries must hold the simulated book exactly, with
update ids and trade ids that follow each other.
"""

from __future__ import annotations

import random

import orjson
import pytest

from bench import floor
from bench.chains import CONTINUES, Chains
from bench.floor import KEYFRAME_EVERY_MS, FloorSeries
from dashboard.market.depth import BOOK_FIRST_U, BOOK_FULL, BOOK_LAST_U, TRADES_FIRST_ID, TRADES_LAST_ID, BookReplicas
from workers.simulator import SymbolSpec


def _series() -> FloorSeries:
    spec = SymbolSpec("S00", initial_price=100.0, volatility=0.3, spread_bps=5.0, tick_interval_ms=250)
    return FloorSeries(spec, seq=41, start=0, epoch="floor-0", rng=random.Random(3))


def test_entries_rebuild_the_book_and_ids_follow_each_other() -> None:
    series, replicas = _series(), BookReplicas()
    last_u = last_trade = None
    fulls = []
    seqs = []
    for window in range(40):  # 4 s of 100 ms windows, a tick every 250 ms
        now = window * 100
        while series.due <= now:
            seqs.append(series.tick(int(series.due), 250.0)["seq"])
            series.due += 250.0
        entry, traded = series.book_window(now)
        if entry is not None:
            if last_u is not None:
                assert entry[BOOK_FIRST_U] == last_u + 1
            last_u = entry[BOOK_LAST_U]
            fulls.append(entry[BOOK_FULL])
            assert replicas.apply("S00", entry) is not None
            book = replicas.books["S00"]
            assert list(book.bids) == series.book.bids()
            assert list(book.asks) == series.book.asks()
        if traded is not None:
            if last_trade is not None:
                assert traded[TRADES_FIRST_ID] == last_trade + 1
            last_trade = traded[TRADES_LAST_ID]
    assert seqs == list(range(42, 42 + len(seqs)))  # the tick series continues the stored seq
    assert fulls[0] is True  # a keyframe first, then one a second
    assert sum(fulls) == 40 * 100 // KEYFRAME_EVERY_MS
    assert replicas.missed == 0


def test_a_window_without_ticks_sends_only_the_keyframe_when_due() -> None:
    series = _series()
    series.tick(0, 250.0)
    entry, traded = series.book_window(0)
    assert entry is not None
    assert entry[BOOK_FULL]
    assert traded is not None
    assert series.book_window(100) == (None, None)  # nothing changed, no keyframe due
    entry, traded = series.book_window(KEYFRAME_EVERY_MS)
    assert entry is not None
    assert entry[BOOK_FULL]
    assert entry[BOOK_FIRST_U] == entry[BOOK_LAST_U] + 1  # a repeat: the book did not move
    assert traded is None


def _message(series: FloorSeries, now: int) -> bytes:
    ticks = []
    while series.due <= now:
        ticks.append(series.tick(int(series.due), 250.0))
        series.due += 250.0
    entry, traded = series.book_window(now)
    pieces = {"S00": orjson.dumps(ticks)[1:-1].decode()} if ticks else {}
    last = {"S00": ticks[-1]["seq"]} if ticks else {}
    return orjson.dumps(
        {
            "pieces": pieces,
            "last": last,
            "books": {"S00": entry} if entry else {},
            "trades": {"S00": traded} if traded else {},
        }
    )


def test_the_server_sends_a_snapshot_then_diffs_that_continue_it_then_trades(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        floor, "broadcast", lambda members, frame, text: sent.extend((ws, orjson.loads(frame)) for ws in members)
    )
    server = floor.FloorServer(["S00"])
    server.groups[("S00",)] = {"a", "b"}  # type: ignore[arg-type]
    server.pending[("S00", 5)] = {"a"}  # type: ignore[arg-type]
    server.trade_groups[("S00",)] = {"a"}  # type: ignore[arg-type]
    series = _series()
    chains = Chains()
    for window in range(30):
        server.fan_out(_message(series, window * 100))
    to_a = [frame for ws, frame in sent if ws == "a"]
    assert all(ws == "a" for ws, frame in sent if frame["type"] != "ticks")  # b follows ticks only
    kinds = [f["type"] for f in to_a]
    assert kinds[:3] == ["ticks", "depth_snapshot", "trades"]  # per window: ticks, depth, trades
    assert kinds.count("depth_snapshot") == 1
    snapshot = to_a[1]
    assert len(snapshot["bids"]) == len(snapshot["asks"]) == 5  # the levels asked for
    chains.snapshot("S00", snapshot["epoch"], snapshot["u"])
    depth = [f for f in to_a if f["type"] == "depth"]
    assert depth
    assert all(chains.depth("S00", f["epoch"], f["U"], f["u"]) == CONTINUES for f in depth)
    trades = [t for f in to_a if f["type"] == "trades" for t in f["data"]]
    assert [t["id"] for t in trades] == list(range(trades[0]["id"], trades[0]["id"] + len(trades)))
    assert ("S00", 5) in server.depth
    assert not server.pending
