"""The capacity benchmark's balancer and table (``bench/capacity.py``)."""

from __future__ import annotations

import argparse

from bench.capacity import haproxy_config, render
from bench.results import cpu_figures


def test_the_balancer_spreads_over_every_web_process_on_its_own_port() -> None:
    config = haproxy_config(9000, [8001, 8002, 8003, 8004])
    assert "bind 127.0.0.1:9000" in config
    assert "balance leastconn" in config
    for i, port in enumerate([8001, 8002, 8003, 8004], start=1):
        assert f"server web{i} 127.0.0.1:{port}" in config
    assert "timeout tunnel 1h" in config, "a WebSocket outlives HTTP's timeouts"


def test_the_balancers_cpu_is_counted_apart_from_the_web_processes() -> None:
    usage = {
        "web1": {"cpu_s": 0.4, "cpu_pct": 5.0, "rss_mib": 100.0},
        "web2": {"cpu_s": 0.4, "cpu_pct": 5.0, "rss_mib": 100.0},
        "haproxy": {"cpu_s": 0.2, "cpu_pct": 2.5, "rss_mib": 20.0},
        "client1": {"cpu_s": 1.0, "cpu_pct": 12.5, "rss_mib": 50.0},
    }
    figures = cpu_figures(usage, ["web1", "web2"], frames=1000, ticks=1_000_000, dashboard_s=8000.0)
    assert figures["cpu_us_per_tick"] == 0.8
    assert figures["balancer_us_per_tick"] == 0.2
    assert figures["balancer_cpu_pct"] == 2.5
    assert figures["stack_cpu_pct"] == 12.5  # web and balancer
    assert "balancer_cpu_pct" not in cpu_figures({"web1": usage["web1"]}, ["web1"], 1, 1, 1.0)


def test_the_table_compares_each_count_with_one_process() -> None:
    args = argparse.Namespace(clients=1000, symbols=50, rate=200.0)
    rows = [{"web_procs": 1, "cpu_us_per_tick": 0.32}, {"web_procs": 2, "cpu_us_per_tick": 0.40}]
    text = render(rows, args)
    assert "2 web processes: web CPU per tick x1.25 of one process's" in text
