"""The storms' figures (``bench/results.py``): connect storm and restart storm, by hand and at the edges."""

from __future__ import annotations

from typing import Any

from bench import results


def _storm(lines: list[Any], base_lines: list[Any], usage: dict[str, Any], requested: int = 300) -> dict[str, Any]:
    return results.storm_figures(
        lines,
        base_lines,
        usage,
        start_at=1000.0,
        requested=requested,
        web="web1",
        procs=2,
        concurrency=100,
        base_clients=50,
        other_cpu_pct=12.0,
    )


def test_storm_figures_by_hand() -> None:
    lines = [
        {"connected": 140, "failures": {"timeout": 5}, "error_codes": {"unavailable": 3}, "last_ready_at": 1012.5},
        {
            "connected": 150,
            "failures": {"timeout": 5},
            "error_codes": {"unavailable": 2, "x": 1},
            "last_ready_at": 1010,
        },
    ]
    base = [{"lost": 0, "ticks": 500, "latency_hist": {"20": 98, "200": 2}, "max_latency_ms": 210, "seconds": 12.5}]
    usage = {
        "web1": {"cpu_pct": 46.04, "rss_mib": 208.0},
        "client0": {"cpu_pct": 5.0},  # a base dashboard's process: not the storm's
        "storm-client0": {"cpu_pct": 57.4},
        "storm-client1": {"cpu_pct": 91.0},
    }
    assert _storm(lines, base, usage) == {
        "clients_connected": 290,
        "clients_text": "290/300",
        "connect_failures": {"timeout": 10},
        "failed_handshakes": 10,
        "error_codes": {"unavailable": 5, "x": 1},
        "unavailable": 5,
        "all_live_s": None,  # 10 never got through: not all live
        "last_live_s": 12.5,  # the last one that did, from the storm's start
        "storm_concurrency": 100,
        "base_clients": 50,
        "lost": 0,
        "p50_ms": 20,
        "p99_ms": 200,  # rank 99 of 100: 20 ms holds 98
        "max_ms": 210,
        "base_ticks": 500,
        "web_cpu_pct": 46.0,
        "web_rss_mib": 208.0,
        "other_cpu_pct": 12.0,
        "client_cpu_text": "148/2p sat",  # 57.4 + 91.0; one storm process above 90 %
        "duration_s": 12.5,
    }


def test_storm_all_live_when_every_dashboard_made_it() -> None:
    lines = [{"connected": 300, "last_ready_at": 1003.25}]
    figures = _storm(lines, [], {})
    assert figures["all_live_s"] == 3.25
    assert figures["last_live_s"] == 3.25
    assert figures["failed_handshakes"] == 0


def test_storm_figures_with_nothing_reported() -> None:
    figures = _storm([], [], {})
    assert figures["clients_connected"] == 0
    assert figures["failed_handshakes"] == 300
    assert figures["all_live_s"] is None
    assert figures["last_live_s"] is None
    assert figures["p99_ms"] is None
    assert figures["max_ms"] is None
    assert figures["duration_s"] is None
    assert figures["web_cpu_pct"] == 0.0
    assert figures["client_cpu_text"] == "0/2p"


def test_restart_figures_by_hand() -> None:
    lines = [
        {"back": 100, "lost_socket": 100, "last_back_s": 2.5, "resumed": 4000, "resnapshots": 0, "retries": 7},
        {"back": 99, "lost_socket": 100, "last_back_s": 3.0, "resumed": 950, "resnapshots": 50},
    ]
    lines[0]["error_codes"] = {"unavailable": 1}
    assert results.restart_figures(lines, connected=200, web_restart_s=1.234) == {
        "clients_text": "199/200",
        "web_restart_s": 1.23,
        "lost_socket": 200,
        "back": 199,
        "all_live_s": None,  # one never came back
        "last_live_s": 3.0,
        "resumed_symbols": 4950,
        "resnapshot_symbols": 50,
        "reconnect_retries": 7,
        "error_codes": {"unavailable": 1},
        "unavailable": 1,
        "failed_handshakes": 1,
    }


def test_restart_all_back() -> None:
    lines = [{"back": 10, "last_back_s": 1.5}]
    figures = results.restart_figures(lines, connected=10, web_restart_s=0.8)
    assert figures["all_live_s"] == 1.5
    assert figures["failed_handshakes"] == 0
    assert figures["clients_text"] == "10"


def test_restart_with_nobody_connected() -> None:
    figures = results.restart_figures([], connected=0, web_restart_s=0.0)
    assert figures["all_live_s"] is None  # nobody to bring back is not "all back"
    assert figures["last_live_s"] is None
    assert results.restart_figures([{"back": 0, "last_back_s": 0.0}], 0, 0.0)["all_live_s"] is None
    assert figures["back"] == 0
    assert figures["unavailable"] == 0
