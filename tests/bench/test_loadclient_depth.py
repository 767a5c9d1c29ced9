"""What the load client counts of the book channels (``bench/loadclient.py``): frames in, counters out."""

from __future__ import annotations

import time

import orjson

from bench.loadclient import Dashboard, Stats


def _feed(board: Dashboard, *frames: dict) -> None:
    for frame in frames:
        board.on_frame(orjson.dumps(frame))


def _board(measuring: bool = True) -> Dashboard:
    stats = Stats()
    stats.measuring = measuring
    return Dashboard(0, stats, want=2)


def _depth(u0: int, u1: int, ts: int, symbol: str = "S03") -> dict:
    return {"type": "depth", "symbol": symbol, "epoch": "e", "U": u0, "u": u1, "ts": ts, "bids": [], "asks": []}


def _trades(*ids: int, ts: int, symbol: str = "S03") -> dict:
    data = [{"symbol": symbol, "epoch": "e", "id": i, "ts": ts, "price": 1.0, "size": 1.0, "side": "buy"} for i in ids]
    return {"type": "trades", "data": data}


def test_the_first_depth_snapshot_makes_the_dashboard_ready_a_later_one_is_a_resnapshot() -> None:
    board = _board()
    _feed(board, {"type": "snapshot", "symbol": "S00", "epoch": "x", "seq": 5})
    assert not board.ready.is_set()
    _feed(board, {"type": "depth_snapshot", "symbol": "S03", "epoch": "e", "u": 9, "bids": [], "asks": []})
    assert board.ready.is_set()
    _feed(board, {"type": "depth_snapshot", "symbol": "S03", "epoch": "e", "u": 30, "bids": [], "asks": []})
    assert board.stats.depth_resnapshots == 1
    assert board.stats.depth_resnapshots_total == 1
    assert board.want == 0  # a resnapshot is no symbol more


def test_depth_frames_and_trades_are_counted_checked_and_timed() -> None:
    board = _board()
    now = int(time.time() * 1000)
    _feed(
        board,
        {"type": "depth_snapshot", "symbol": "S03", "epoch": "e", "u": 9, "bids": [], "asks": []},
        _depth(10, 11, now - 5),
        _depth(14, 14, now - 5),  # 12 and 13 lost: a gap
        _trades(100, 101, ts=now - 50),  # the first anchors
        _trades(103, ts=now - 50),  # 102 lost
        _trades(103, ts=now - 50),  # again: a duplicate
    )
    stats = board.stats
    assert (stats.depth_frames, stats.depth_gaps, stats.depth_duplicates, stats.depth_unanchored) == (2, 1, 0, 0)
    assert (stats.trade_frames, stats.trades, stats.trade_gaps, stats.trade_duplicates) == (3, 3, 1, 1)
    assert stats.frames == 6  # every frame of the window, the snapshot too
    assert stats.frame_types == {"depth_snapshot": 1}  # depth and trades frames have their own counters
    assert sum(stats.depth_hist) == 2
    assert sum(stats.trade_hist) == 4  # one sample per trade received, duplicates included
    assert 5 <= stats.depth_max_latency < 1000
    assert 50 <= stats.trade_max_latency < 1000


def test_outside_the_window_the_chains_go_on_and_only_totals_count() -> None:
    board = _board(measuring=False)
    now = int(time.time() * 1000)
    _feed(
        board,
        {"type": "depth_snapshot", "symbol": "S03", "epoch": "e", "u": 9, "bids": [], "asks": []},
        _depth(10, 10, now),
        _depth(12, 12, now),  # a gap during the warm-up
        _trades(1, 3, ts=now),  # 2 missing: a gap
    )
    stats = board.stats
    assert (stats.depth_frames, stats.depth_gaps, stats.trades, stats.trade_gaps) == (0, 0, 0, 0)
    assert (stats.depth_gaps_total, stats.trade_gaps_total) == (1, 1)
    stats.measuring = True
    _feed(board, _depth(13, 13, now), _trades(4, ts=now))  # the chains continue into the window
    assert (stats.depth_frames, stats.depth_gaps, stats.trades, stats.trade_gaps) == (1, 0, 1, 0)
