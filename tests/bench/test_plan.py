"""What a benchmark run measures (``bench/plan.py``): flags and variables, the scenarios, the client split."""

from __future__ import annotations

import os

import pytest

from bench import plan
from bench.plan import Config, Scenario


@pytest.fixture(autouse=True)
def _no_bench_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own ``BENCH_*`` settings must not change what these tests parse."""
    for name in list(os.environ):
        if name.startswith("BENCH_"):
            monkeypatch.delenv(name)


def test_parse_load() -> None:
    assert plan.parse_load("500@200", 1000.0) == (500, 200.0)
    assert plan.parse_load("500", 1000.0) == (500, 1000.0)


@pytest.mark.parametrize(
    ("clients", "procs", "shares"),
    [(10, 3, [4, 3, 3]), (9, 3, [3, 3, 3]), (1, 1, [1]), (2, 3, [1, 1, 0]), (0, 2, [0, 0])],
)
def test_split_shares_clients_evenly_first_ones_taking_the_rest(clients: int, procs: int, shares: list[int]) -> None:
    assert plan.split(clients, procs) == shares
    assert sum(shares) == clients


def test_client_procs_one_per_400_at_most_one_per_cpu() -> None:
    config = Config()
    assert plan.client_procs(config, 100, cpus=8) == 1
    assert plan.client_procs(config, 400, cpus=8) == 1
    assert plan.client_procs(config, 401, cpus=8) == 2
    assert plan.client_procs(config, 2000, cpus=2) == 2
    assert plan.client_procs(config, 0, cpus=2) == 1


def test_client_procs_as_configured_but_never_more_than_clients() -> None:
    config = Config(client_procs=4)
    assert plan.client_procs(config, 1000, cpus=1) == 4
    assert plan.client_procs(config, 3, cpus=1) == 3


def test_defaults_are_the_full_run() -> None:
    config = plan.parse_args([])
    assert config == Config()


def test_quick_preset_then_flags() -> None:
    config = plan.parse_args(["--quick", "--clients", "10,20", "--duration", "3", "--storm", "0"])
    assert config.quick
    assert config.clients == [10, 20]
    assert config.duration == 3.0
    assert config.storm == 0
    assert config.idle == 300  # from the preset
    assert config.profile == ""  # "off" in the preset


def test_variables_stand_in_for_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_RATES", "500")
    monkeypatch.setenv("BENCH_TARGETS", "ticker, floor")
    monkeypatch.setenv("BENCH_STORM_PROFILE", "off")
    config = plan.parse_args([])
    assert config.rates == [500.0]
    assert config.targets == ["ticker", "floor"]
    assert not config.storm_profile
    assert config.sync_rate == 500.0  # the sync rate must be one of the rates: the highest


def test_per_client_is_capped_by_the_symbols() -> None:
    assert plan.parse_args(["--symbols", "20", "--per-client", "30"]).per_client == 20
    assert plan.parse_args(["--symbols", "20"]).per_client == 20


def test_scenario_labels() -> None:
    assert Scenario("idle", 300, 200.0, 0).label() == "idle 300"
    assert Scenario("sync", 50, 1000.0, 1).label() == "sync 50x1 @1000"
    assert Scenario("storm", 300, 200.0, 50).label() == "connect storm 300x50 @200"
    assert Scenario("restart", 300, 200.0, 50).label() == "restart storm 300x50 @200"
    assert Scenario("stream", 1000, 200.0, 50, web_procs=2).label() == "stream 1000x50 @200 2web"
    assert Scenario("stream", 500, 200.0, 50, profiled=True).label() == "stream 500x50 @200 profiled"
    assert Scenario("depth", 1000, 200.0, 50).label() == "depth 1000x50+1 @200"
    assert Scenario("depth", 1000, 200.0, 50, profiled=True).label() == "depth 1000x50+1 @200 profiled"


def test_quick_run_order_for_each_target() -> None:
    config = plan.parse_args(["--quick"])
    assert [s.label() for s in plan.scenarios_for(config, "ticker")] == [
        "idle 300",
        "stream 100x50 @200",
        "stream 300x50 @200",
        "depth 100x50+1 @200",
        "stream 100x50 @1000",
        "stream 300x50 @1000",
        "sync 50x1 @1000",
        "connect storm 300x50 @200",
        "restart storm 300x50 @200",
    ]
    assert [s.label() for s in plan.scenarios_for(config, "floor")] == [
        "stream 100x50 @200",
        "stream 300x50 @200",
        "depth 100x50+1 @200",
        "stream 100x50 @1000",
        "stream 300x50 @1000",
    ]
    assert [s.label() for s in plan.scenarios_for(config, "naive")] == ["stream 100x50 @1000"]
    assert plan.multi_web_scenario(config) is None


def test_full_run_profiles_a_repeat_and_groups_naive_loads_by_rate() -> None:
    config = plan.parse_args(["--naive-loads", "100@1000,100@200,500@200"])
    ticker = plan.scenarios_for(config, "ticker")
    assert [s.label() for s in ticker[-2:]] == ["stream 500x50 @200 profiled", "depth 1000x50+1 @200 profiled"]
    assert [s.label() for s in plan.scenarios_for(config, "naive")] == [
        "idle 2000",
        "stream 100x50 @1000",
        "stream 100x50 @200",
        "stream 500x50 @200",
    ]
    multi = plan.multi_web_scenario(config)
    assert multi is not None
    assert multi.label() == "stream 1000x50 @200 2web"


def test_users_needed_covers_the_largest_scenario() -> None:
    assert plan.users_needed(Config()) == 2000  # the idle scenario
    assert plan.users_needed(Config(idle=0, clients=[10], storm=300, storm_base=50, multi_web=0)) == 1000
    assert plan.users_needed(Config(idle=0, clients=[10], multi_web=0, storm=0, restart_storm=0)) == 1000  # depth
    nothing_big = Config(idle=0, clients=[10], sync_clients=0, multi_web=0, storm=0, restart_storm=0, depth_clients=0)
    assert plan.users_needed(nothing_big) == 100


def test_depth_flags_and_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    config = plan.parse_args(["--depth-clients", "50", "--depth-rate", "1000", "--depth-profile", "off"])
    assert (config.depth_clients, config.depth_rate, config.depth_profile) == (50, 1000.0, False)
    quick = plan.parse_args(["--quick"])
    assert (quick.depth_clients, quick.depth_rate, quick.depth_profile) == (100, 200.0, False)
    monkeypatch.setenv("BENCH_DEPTH_CLIENTS", "0")
    assert plan.parse_args([]).depth_clients == 0


def test_clients_0_runs_no_fan_out_but_the_depth_scenario() -> None:
    config = plan.parse_args(["--clients", "0", "--idle", "0", "--depth-clients", "20", "--rates", "200"])
    assert config.clients == []
    assert [s.label() for s in plan.scenarios_for(config, "floor")] == ["depth 20x50+1 @200"]


def test_the_depth_scenario_follows_the_fan_outs_of_its_rate_or_comes_last() -> None:
    config = Config(idle=0, clients=[10], rates=[200.0, 1000.0], depth_clients=20, depth_rate=1000.0)
    labels = [s.label() for s in plan.scenarios_for(config, "floor")]
    assert labels == ["stream 10x50 @200", "stream 10x50 @1000", "depth 20x50+1 @1000"]
    config.depth_rate = 500.0  # a rate no fan-out runs at: after all of them
    assert [s.label() for s in plan.scenarios_for(config, "floor")][-1] == "depth 20x50+1 @500"
    config.depth_clients = 0
    assert not any(s.kind == "depth" for s in plan.scenarios_for(config, "ticker"))
    naive = plan.scenarios_for(Config(depth_clients=20), "naive")
    assert not any(s.kind == "depth" for s in naive)  # the tutorial pattern has no book channels


def test_connect_budget_is_shorter_for_the_tutorial_pattern() -> None:
    config = Config()
    assert plan.connect_budget(config, "naive") == 20.0
    assert plan.connect_budget(config, "ticker") == 45.0
