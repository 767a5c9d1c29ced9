"""The benchmark's report (``bench/report.py``): ratios, where a load stops holding, the capacity line, the tables."""

from __future__ import annotations

from typing import Any

import pytest

from bench import report
from bench.targets import symbol_names


def _stream(target: str, clients: int, rate: float, **figures: Any) -> dict[str, Any]:
    row = {
        "target": target,
        "scenario": f"stream {clients}x50 @{rate:.0f}",
        "kind": "stream",
        "clients_requested": clients,
        "clients_connected": clients,
        "symbols_per_client": 50,
        "rate": rate,
        "web_procs": 1,
        "profiled": False,
        "lost": 0,
        "delivered_pct": 100.0,
        "p99_ms": 100,
        "web_cpu_pct": 10.0,
        "client_cpu_max_pct": 10.0,
        "producer_tps": rate,
        "stack_cpu_pct": 20.0,
    }
    row.update(figures)
    return row


# --- ratios ----------------------------------------------------------------------------------


def test_ratios_by_hand() -> None:
    ticker = _stream("ticker", 100, 200.0, delivered_tps=20000.0, p99_ms=107, cpu_per_frame_ms=0.022)
    floor = _stream("floor", 100, 200.0, delivered_tps=16000.0, p99_ms=50, cpu_per_frame_ms=0.011)
    [row] = report.ratios([ticker, floor])
    assert row["load"] == "100x50 @200"
    assert row["reference"] == "floor"
    assert row["delivered_ratio"] == 1.25  # 20,000 / 16,000
    assert row["p99_ratio"] == 2.14  # 107 / 50
    assert row["cpu_per_frame_ratio"] == pytest.approx(2.0)
    assert (row["ticker_p99_ms"], row["ref_p99_ms"]) == (107, 50)


def test_ratios_only_pair_the_same_load_and_skip_profiled_repeats() -> None:
    rows = [
        _stream("ticker", 100, 200.0, delivered_tps=1.0),
        _stream("ticker", 100, 200.0, delivered_tps=9.0, profiled=True),  # a repeat: never compared
        _stream("floor", 300, 200.0, delivered_tps=1.0),  # another load
        _stream("naive", 100, 1000.0, delivered_tps=1.0),  # another rate
    ]
    assert report.ratios(rows) == []


def test_ratios_of_a_zero_or_missing_reference_are_none() -> None:
    ticker = _stream("ticker", 100, 200.0, delivered_tps=10.0, p99_ms=None, cpu_per_frame_ms=0.02)
    naive = _stream("naive", 100, 200.0, delivered_tps=0.0, p99_ms=900, cpu_per_frame_ms=None)
    [row] = report.ratios([ticker, naive])
    assert row["delivered_ratio"] is None  # the reference delivered nothing
    assert row["p99_ratio"] is None
    assert row["cpu_per_frame_ratio"] is None


def test_ratios_of_a_multi_web_run_compare_with_the_single_process_reference() -> None:
    ticker = _stream("ticker", 1000, 200.0, web_procs=2, delivered_tps=4.0)
    floor = _stream("floor", 1000, 200.0, delivered_tps=2.0)
    [row] = report.ratios([ticker, floor])
    assert row["load"] == "1000x50 @200 (2 web)"
    assert row["delivered_ratio"] == 2.0


# --- where it stops --------------------------------------------------------------------------


def test_holds_needs_every_condition() -> None:
    assert report.holds(_stream("ticker", 100, 200.0))
    assert report.holds(_stream("ticker", 100, 200.0, p99_ms=250, delivered_pct=97.0))
    assert not report.holds(_stream("ticker", 100, 200.0, p99_ms=251))
    assert not report.holds(_stream("ticker", 100, 200.0, delivered_pct=96.9))
    assert not report.holds(_stream("ticker", 100, 200.0, lost=1))
    assert not report.holds(_stream("ticker", 100, 200.0, p99_ms=None))
    assert not report.holds(_stream("ticker", 100, 200.0, clients_connected=99))


def test_why_not_names_each_limit() -> None:
    row = _stream(
        "ticker",
        1000,
        1000.0,
        web_cpu_pct=95.0,
        client_cpu_max_pct=92.0,
        producer_tps=800.0,
        lost=12,
        clients_connected=990,
        stack_cpu_pct=180.0,
    )
    assert report.why_not(row).split("; ") == [
        "web process CPU-bound (95 % of a core)",
        "load client CPU-bound",
        "producer reached 800 of 1000 ticks/s",
        "12 ticks dropped",
        "only 990 of 1000 handshakes completed",
        "machine CPU-bound (server processes 180 % of 200 %)",
    ]


def test_why_not_thresholds_scale_with_web_processes() -> None:
    # 160 % over two web processes is 80 % each: not CPU-bound.
    row = _stream("ticker", 1000, 200.0, web_procs=2, web_cpu_pct=160.0, p99_ms=300, cpu_per_frame_ms=0.02)
    assert "CPU-bound" not in report.why_not(row)


def test_why_not_explains_a_slow_p99_by_the_burst_of_cpu_per_window() -> None:
    row = _stream("ticker", 1000, 200.0, p99_ms=300, cpu_per_frame_ms=0.05, publish_lag_p99_ms=105)
    # 1,000 dashboards x 0.05 ms per frame: 50 ms of CPU per window on the one web process.
    assert report.why_not(row) == (
        "p99 300 ms with the web process at 10 % CPU: a window's frames are written one after another,"
        " 50 ms of CPU per window per web process, on top of ticks already 105 ms old (p99) when their"
        " batch crossed Redis"
    )


def test_why_not_without_any_evidence() -> None:
    assert report.why_not(_stream("ticker", 100, 200.0, delivered_pct=90.0)) == "latency above target"


def test_capacity_dashboards_by_hand() -> None:
    # 0.02 ms per frame x 10 frames/s = 0.2 ms of CPU per dashboard-second: 5,000 fill a core.
    assert report.capacity_dashboards(0.02, 10.0) == pytest.approx(5000.0)
    assert report.capacity_dashboards(0.02, 10.0, web_procs=2) == pytest.approx(10000.0)


def test_scaling_says_where_a_series_stops_holding() -> None:
    rows = [
        _stream("ticker", 500, 200.0, frames_per_s=5000.0, cpu_per_frame_ms=0.01),
        _stream("ticker", 100, 200.0, frames_per_s=1000.0, cpu_per_frame_ms=0.02),
        _stream("ticker", 1000, 200.0, frames_per_s=9000.0, cpu_per_frame_ms=0.03, lost=5),
    ]
    [line] = report.scaling(rows)
    assert line.startswith("- **ticker @200 ticks/s** (100: 1000 frames/s, 10 % CPU, 0.020 ms/frame, 500:")
    assert " Holds up to 500 dashboards." in line
    assert " Stops holding at 1000: 5 ticks dropped." in line
    # The best CPU per frame (0.01 ms) at the smallest load's 10 frames/s per dashboard: 10,000.
    assert line.endswith(
        " At 0.010 ms per frame and 10.0 frames/s per dashboard, a full core per web process would serve"
        " about 10000 dashboards."
    )


def test_scaling_skips_rows_without_frames_and_profiled_repeats() -> None:
    rows = [
        _stream("ticker", 100, 200.0, frames_per_s=0.0),
        _stream("ticker", 300, 200.0, frames_per_s=10.0, profiled=True),
    ]
    assert report.scaling(rows) == []


# --- tables ----------------------------------------------------------------------------------


def test_render_table_aligns_columns_and_dashes_missing_cells() -> None:
    row = _stream("ticker", 100, 200.0, clients_text="100", p50_ms=58, delivered_pct=100.1)
    header, rule, line = report.render_table([row]).splitlines()
    assert header.split()[:3] == ["target", "scenario", "clients"]
    assert len(header) == len(rule) == len(line)
    cells = line.split()
    assert cells[:5] == ["ticker", "stream", "100x50", "@200", "100"]
    assert "100.1" in cells
    assert "-" in cells  # e.g. KiB/conn of a fan-out


def test_render_table_of_no_results_is_the_header() -> None:
    assert len(report.render_table([]).splitlines()) == 2


def test_render_storms_only_lists_storms() -> None:
    assert report.render_storms([_stream("ticker", 100, 200.0)]) == ""
    storm = {"kind": "storm", "scenario": "connect storm 300x50 @200", "clients_text": "300", "all_live_s": 3.04}
    lines = report.render_storms([storm]).splitlines()
    assert len(lines) == 3
    assert "3.0" in lines[2].split()


def test_symbol_names_share_one_width() -> None:
    assert symbol_names(1) == ["S00"]
    assert symbol_names(50)[-1] == "S49"
    assert symbol_names(101)[0] == "S000"
    assert symbol_names(101)[-1] == "S100"


# --- the depth scenario ----------------------------------------------------------------------


def _depth(target: str, clients: int = 1000, rate: float = 200.0, **figures: Any) -> dict[str, Any]:
    row = _stream(target, clients, rate, kind="depth", scenario=f"depth {clients}x50+1 @{rate:.0f}")
    row.update(
        {
            "depth_gaps": 0,
            "trade_gaps": 0,
            "depth_resnapshots": 0,
            "book_p99_ms": 90,
            "cpu_us_per_message": 2.0,
            "delivered_messages_per_s": 50000.0,
            "clients_text": str(clients),
        }
    )
    row.update(figures)
    return row


def test_depth_ratios_by_hand() -> None:
    ticker = _depth("ticker", cpu_us_per_message=3.0, p99_ms=120, book_p99_ms=100, delivered_messages_per_s=9000.0)
    floor = _depth("floor", cpu_us_per_message=2.0, p99_ms=60, book_p99_ms=40, delivered_messages_per_s=10000.0)
    [row] = report.depth_ratios([ticker, floor, _stream("floor", 1000, 200.0)])
    assert row["load"] == "1000x50+1 @200"
    assert row["cpu_per_message_ratio"] == 1.5  # 3.0 / 2.0 µs
    assert row["cpu_within_target"] is True  # at most 2x
    assert row["p99_ratio"] == 2.0  # ticks: 120 / 60
    assert row["book_p99_ratio"] == 2.5  # depth and trades: 100 / 40
    assert row["delivered_messages_ratio"] == 0.9
    assert (row["ticker_holds"], row["ref_holds"]) == (True, True)


def test_depth_ratios_over_the_cpu_target_and_without_a_floor() -> None:
    ticker = _depth("ticker", cpu_us_per_message=4.2)
    [row] = report.depth_ratios([ticker, _depth("floor", cpu_us_per_message=2.0)])
    assert row["cpu_within_target"] is False  # 2.1x
    assert report.depth_ratios([ticker, _depth("floor", clients=500)]) == []  # another load
    assert report.depth_ratios([ticker, _depth("floor", profiled=True)]) == []  # a repeat is never compared


def test_depth_holds_needs_whole_chains_and_the_book_in_target_too() -> None:
    assert report.depth_holds(_depth("ticker"))
    assert not report.depth_holds(_depth("ticker", depth_gaps=1))
    assert not report.depth_holds(_depth("ticker", trade_gaps=1))
    assert not report.depth_holds(_depth("ticker", book_p99_ms=251))
    assert not report.depth_holds(_depth("ticker", book_p99_ms=None))
    assert not report.depth_holds(_depth("ticker", lost=1))  # as a fan-out: ticks too
    assert report.depth_holds(_depth("ticker", depth_resnapshots=2))  # a resnapshot is legal


def test_render_depth_puts_ticker_and_the_floor_of_a_load_side_by_side() -> None:
    assert report.render_depth([_stream("ticker", 100, 200.0)]) == ""
    rows = [
        _depth("floor", clients=500),
        _depth("ticker", clients=1000, p50_ms=40, p99_ms=120, depth_p50_ms=9, depth_p99_ms=30),
        _depth("floor", clients=1000),
        _depth("ticker", clients=500),
    ]
    header, rule, *lines, legend = report.render_depth(rows).splitlines()
    assert header.split()[:4] == ["target", "scenario", "clients", "msgs/s"]
    assert [line.split()[0] for line in lines] == ["ticker", "floor", "ticker", "floor"]  # by load, Ticker first
    assert "500x50+1" in lines[0]
    assert "40/120" in lines[2].split()  # tick p50/p99
    assert "9/30" in lines[2].split()  # depth p50/p99
    assert len(header) == len(rule) == len(lines[0])
    assert legend.startswith("msgs = ticks + depth frames + trades")


def test_markdown_has_the_depth_section_only_when_a_depth_load_ran() -> None:
    run: dict[str, Any] = {
        "stamp": "s",
        "environment": {},
        "config": {},
        "results": [_stream("ticker", 100, 200.0)],
        "ratios": [],
    }
    assert "## Depth and trades" not in report.render_markdown(run)
    run["results"] = [_depth("ticker"), _depth("floor")]
    run["depth_ratios"] = report.depth_ratios(run["results"])
    text = report.render_markdown(run)
    assert "## Depth and trades" in text
    assert "| 1000x50+1 @200 | floor | 1.00 |" in text
