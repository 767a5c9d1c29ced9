"""The depth scenario's maths (``bench/results.py``): messages delivered, CPU per message, the book figures.

Every figure is worked out by hand next to its literal.
"""

from __future__ import annotations

import pytest

from bench import results

# Two load-client processes of a depth window (4 s).
LINES = [
    {
        "ticks": 3000,
        "latency_hist": {"20": 2, "80": 1},
        "depth_frames": 120,
        "depth_gaps": 0,
        "depth_duplicates": 0,
        "depth_unanchored": 0,
        "depth_resnapshots": 1,
        "depth_max_latency_ms": 30,
        "depth_latency_hist": {"10": 3},
        "trade_frames": 100,
        "trades": 130,
        "trade_gaps": 2,
        "trade_duplicates": 0,
        "trade_max_latency_ms": 200,
        "trade_latency_hist": {"40": 1, "200": 1},
        "depth_gaps_total": 1,  # one more during the warm-up
        "depth_resnapshots_total": 1,
        "trade_gaps_total": 2,
    },
    {
        "ticks": 1000,
        "latency_hist": {"20": 1},
        "depth_frames": 80,
        "depth_latency_hist": {"12": 1},
        "depth_max_latency_ms": 12,
        "trades": 70,
        "trade_frames": 60,
        "trade_latency_hist": {"40": 2},
        "trade_max_latency_ms": 41,
    },
]
USAGE = {
    "web1": {"cpu_s": 0.44, "cpu_pct": 11.0},
    "worker": {"cpu_s": 9.0, "cpu_pct": 99.0},  # the producer: not web CPU
    "client0": {"cpu_s": 1.0, "cpu_pct": 25.0},
}


def test_messages_are_ticks_depth_frames_and_trades() -> None:
    assert results.messages_delivered(4000, 200, 200) == 4400


def test_cpu_us_per_message_by_hand() -> None:
    assert results.cpu_us_per_message(0.44, 4400) == 100.0  # 0.44 s / 4,400 messages
    assert results.cpu_us_per_message(0.001, 3) == 333.333  # rounded to the nanosecond
    assert results.cpu_us_per_message(0.5, 0) is None  # nothing arrived: no cost per message


def test_web_cpu_seconds_of_the_named_processes_only() -> None:
    usage = {**USAGE, "web2": {"cpu_s": 0.06, "cpu_pct": 1.5}}
    assert results.web_cpu_seconds(usage, ["web1", "web2"]) == pytest.approx(0.5)
    assert results.web_cpu_seconds(usage, ["web1", "web3"]) == 0.44  # web3 was not sampled


def test_book_figures_by_hand() -> None:
    figures = results.book_figures(LINES, USAGE, ["web1"], duration=4.0)
    assert figures == {
        "messages": 4400,  # 4,000 ticks + 200 depth frames + 200 trades
        "delivered_messages_per_s": 1100.0,
        "cpu_us_per_message": 100.0,  # 0.44 s of web1 / 4,400
        "depth_frames": 200,
        "depth_frames_per_s": 50.0,
        "depth_gaps": 0,
        "depth_duplicates": 0,
        "depth_unanchored": 0,
        "depth_resnapshots": 1,
        "depth_p50_ms": 10,  # {10: 3, 12: 1}
        "depth_p99_ms": 12,
        "depth_max_ms": 30,
        "trade_frames": 160,
        "trades": 200,
        "trades_per_s": 50.0,
        "trade_gaps": 2,
        "trade_duplicates": 0,
        "trade_p50_ms": 40,  # {40: 3, 200: 1}
        "trade_p99_ms": 200,
        "trade_max_ms": 200,
        "book_p99_ms": 200,  # depth and trades together: {10: 3, 12: 1, 40: 3, 200: 1}
        "messages_p99_ms": 200,  # and the ticks: {20: 3, 80: 1} besides
        "gaps_outside_window": 1,  # 1 depth gap in total minus 0 in the window; trades 2 - 2
        "resnapshots_outside_window": 0,
    }


def test_book_figures_with_nothing_received() -> None:
    figures = results.book_figures([], {}, ["web1"], duration=4.0)
    assert figures["messages"] == 0
    assert figures["cpu_us_per_message"] is None
    assert figures["depth_p99_ms"] is None
    assert figures["depth_max_ms"] is None
    assert figures["trade_max_ms"] is None
    assert figures["book_p99_ms"] is None


def _clean(**changes: int) -> dict[str, int]:
    result = {
        "depth_gaps": 0,
        "trade_gaps": 0,
        "depth_resnapshots": 0,
        "depth_unanchored": 0,
        "depth_duplicates": 0,
        "trade_duplicates": 0,
        "gaps_outside_window": 0,
        "resnapshots_outside_window": 0,
    }
    result.update(changes)
    return result


def test_book_notes_none_for_a_clean_window() -> None:
    assert results.book_notes(_clean()) == []


def test_book_notes_each_case() -> None:
    assert results.book_notes(_clean(trade_gaps=2)) == [
        "chains broken in the window: 0 depth frames whose U did not follow the previous u,"
        " 2 trades whose id did not follow the previous one"
    ]
    assert results.book_notes(_clean(depth_resnapshots=3)) == [
        "3 depth_snapshot frames re-sent by the server during the window"
    ]
    assert results.book_notes(_clean(depth_unanchored=1)) == [
        "1 depth frames arrived before their symbol's depth_snapshot"
    ]
    assert results.book_notes(_clean(trade_duplicates=4)) == ["duplicates: 0 depth frames, 4 trades already seen"]
    assert results.book_notes(_clean(gaps_outside_window=1)) == [
        "outside the window (connect, warm-up): 1 gaps, 0 resnapshots"
    ]
