"""What a benchmark run measures: its sizes and, per target, the scenarios in order.

``parse_args`` reads the CLI flags, falling back to ``BENCH_*`` environment variables and
the ``--quick`` preset, into a ``Config``; ``scenarios_for`` turns a configuration into
each target's list of ``Scenario``. Nothing here starts a process.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# The first line of ``python -m bench --help``.
DESCRIPTION = "The orchestrator of ``make bench``: start each server, run the load client against it, report."
# One load-client process keeps up with about this many dashboards before its own CPU bounds the figures.
CLIENTS_PER_PROCESS = 400
# Values of --storm-profile and --profile that turn them off.
OFF = ("off", "0", "no", "false")
PROFILE_OFF = ("off", "0", "none")
# The depth scenario: each dashboard follows the book (DEPTH_LEVELS a side) and the tape of one
# symbol, dashboard i the symbol i % DEPTH_SPREAD of the market.
DEPTH_SPREAD = 10
DEPTH_LEVELS = 20


def parse_load(text: str, default_rate: float) -> tuple[int, float]:
    """``"500@200"`` -> (500 clients, 200 ticks/s); ``"500"`` takes ``default_rate``."""
    clients, _, rate = text.partition("@")
    return int(clients), float(rate or default_rate)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


@dataclass
class Config:
    """Sizes and durations of a run (CLI flags, defaulting to ``BENCH_*`` environment variables)."""

    clients: list[int] = field(default_factory=lambda: [100, 500, 1000])
    rates: list[float] = field(default_factory=lambda: [200.0, 1000.0])
    symbols: int = 50
    per_client: int = 50
    duration: float = 8.0
    # Past the web process's wave collector (dashboard/streams/collector.py: a full collection
    # 2 s after the last stream opened or closed): the previous scenario's closed streams are
    # collected before this one is measured, not counted as its steady state.
    warmup: float = 3.0
    idle: int = 2000
    sync_clients: int = 200
    sync_rate: float = 1000.0
    multi_web: int = 1000
    multi_web_procs: int = 2
    # Depth and trades: DEPTH_CLIENTS dashboards of every symbol's ticks plus one symbol's
    # depth and trades, at DEPTH_RATE ticks/s (Ticker and the floor; 0: skip).
    depth_clients: int = 1000
    depth_rate: float = 200.0
    depth_profile: bool = True  # py-spy Daphne during a repeat of Ticker's depth scenario
    # The tutorial pattern fails early and slowly: only the loads the issue quotes, CLIENTS@RATE.
    naive_loads: list[str] = field(default_factory=lambda: ["100@200", "500@200", "100@1000"])
    ref_idle: bool = True  # idle-connection memory for the references too
    targets: list[str] = field(default_factory=lambda: ["ticker", "floor", "naive"])
    client_procs: int = 0  # 0: one per 400 clients, at most the number of CPUs
    concurrency: int = 25
    connect_budget: float = 45.0
    naive_connect_budget: float = 20.0
    max_minutes: float = 22.0
    profile: str = "500@200"  # CLIENTS@RATE of Ticker to repeat under py-spy ("off": none)
    profile_seconds: float = 10.0
    # Storms (Ticker): STORM dashboards opening at once through STORM_CONCURRENCY handshakes
    # in flight, no retry, beside STORM_BASE connected ones; then the web process restarted
    # under RESTART_STORM dashboards that reconnect and resume.
    storm: int = 1000
    storm_base: int = 100
    storm_concurrency: int = 100
    storm_budget: float = 30.0
    restart_storm: int = 1000
    storm_profile: bool = True
    storm_profile_seconds: float = 10.0
    ref: str = ""
    quick: bool = False
    keep: bool = False
    out: str = str(RESULTS)


QUICK = {
    "clients": [100, 300],
    "rates": [200.0, 1000.0],
    "duration": 4.0,
    "idle": 300,
    "sync_clients": 50,
    "multi_web": 0,
    "depth_clients": 100,
    "depth_profile": False,
    "naive_loads": ["100@1000"],
    "ref_idle": False,
    "connect_budget": 20.0,
    "naive_connect_budget": 15.0,
    "max_minutes": 8.0,
    "profile": "off",
    "storm": 300,
    "storm_base": 50,
    "restart_storm": 300,
    "storm_profile": False,
}
_FLOATS = ("duration", "warmup", "sync_rate", "max_minutes", "depth_rate")
_INTS = (
    "idle",
    "sync_clients",
    "multi_web",
    "depth_clients",
    "storm",
    "storm_base",
    "storm_concurrency",
    "restart_storm",
)


def _parser() -> argparse.ArgumentParser:
    """Every flag, each defaulting to its ``BENCH_*`` variable (None: the configuration's default)."""
    env = os.environ.get
    defaults = Config()
    parser = argparse.ArgumentParser(prog="python -m bench", description=DESCRIPTION)
    add = parser.add_argument
    add("--quick", action="store_true", default=env("BENCH_QUICK", "") == "1", help="~2 min preset")
    add("--clients", default=env("BENCH_CLIENTS"), help="dashboards per scenario, e.g. 100,500,1000 (0: no fan-out)")
    add("--rates", default=env("BENCH_RATES"), help="producer ticks/s in total, e.g. 200,1000")
    add("--symbols", type=int, default=int(env("BENCH_SYMBOLS", str(defaults.symbols))), help="symbols in the market")
    add("--per-client", type=int, default=None, help="symbols each dashboard subscribes to")
    add("--duration", type=float, default=env("BENCH_DURATION"), help="measured seconds per scenario")
    add("--warmup", type=float, default=env("BENCH_WARMUP"), help="seconds between connect and measure")
    add("--idle", type=int, default=env("BENCH_IDLE"), help="idle connections (0: skip)")
    add("--sync-clients", type=int, default=env("BENCH_SYNC_CLIENTS"), help="sync endpoint (0: skip)")
    add("--sync-rate", type=float, default=env("BENCH_SYNC_RATE"), help="rate for the sync scenario")
    add("--multi-web", type=int, default=env("BENCH_MULTI_WEB"), help="dashboards on several Daphnes")
    add("--multi-web-procs", type=int, default=int(env("BENCH_MULTI_WEB_PROCS", str(defaults.multi_web_procs))))
    add(
        "--depth-clients",
        type=int,
        default=env("BENCH_DEPTH_CLIENTS"),
        help=f"dashboards of every symbol's ticks plus one symbol's depth ({DEPTH_LEVELS} levels) and trades,"
        f" spread over {DEPTH_SPREAD} symbols (0: skip; full run 1000)",
    )
    add("--depth-rate", type=float, default=env("BENCH_DEPTH_RATE"), help="rate of the depth scenario (200)")
    add(
        "--depth-profile",
        default=env("BENCH_DEPTH_PROFILE"),
        help="py-spy Daphne during a repeat of Ticker's depth scenario (on/off; full run: on)",
    )
    add("--naive-loads", default=env("BENCH_NAIVE_LOADS"), help="CLIENTS@RATE list for the naive reference")
    add("--targets", default=env("BENCH_TARGETS"), help="ticker,floor,naive")
    add("--client-procs", type=int, default=int(env("BENCH_CLIENT_PROCS", str(defaults.client_procs))))
    concurrency = int(env("BENCH_CONCURRENCY", str(defaults.concurrency)))
    add("--concurrency", type=int, default=concurrency, help="handshakes at once")
    add("--max-minutes", type=float, default=env("BENCH_MAX_MINUTES"), help="deadline of the whole run")
    add(
        "--profile",
        default=env("BENCH_PROFILE"),
        help="py-spy Daphne during a repeat of Ticker's CLIENTS@RATE scenario (full run: 500@200; off: none)",
    )
    add("--storm", type=int, default=env("BENCH_STORM"), help="connect-storm dashboards (0: skip)")
    add("--storm-base", type=int, default=env("BENCH_STORM_BASE"), help="dashboards already connected")
    add("--storm-concurrency", type=int, default=env("BENCH_STORM_CONCURRENCY"), help="storm handshakes in flight")
    add("--restart-storm", type=int, default=env("BENCH_RESTART_STORM"), help="dashboards across a restart (0: skip)")
    add("--storm-profile", default=env("BENCH_STORM_PROFILE"), help="py-spy Daphne during the connect storm (on/off)")
    add("--ref", default=env("BENCH_REF", ""), help="benchmark this git ref of Ticker (git archive)")
    add("--keep", action="store_true", help="keep the work directory (logs, databases)")
    add("--out", default=env("BENCH_OUT", str(RESULTS)), help="results directory")
    return parser


def _config(args: argparse.Namespace) -> Config:
    """The defaults, then the quick preset, then every flag or variable that was given."""
    config = Config()
    if args.quick:
        for key, value in QUICK.items():
            setattr(config, key, value)
        config.quick = True
    if args.clients:
        config.clients = [n for n in _ints(args.clients) if n > 0]
    if args.rates:
        config.rates = _floats(args.rates)
    if args.naive_loads is not None:
        config.naive_loads = _names(args.naive_loads)
    if args.targets:
        config.targets = _names(args.targets)
    for key in _FLOATS:
        if getattr(args, key) is not None:
            setattr(config, key, float(getattr(args, key)))
    if args.storm_profile is not None:
        config.storm_profile = args.storm_profile not in OFF
    if args.depth_profile is not None:
        config.depth_profile = args.depth_profile not in OFF
    for key in _INTS:
        if getattr(args, key) is not None:
            setattr(config, key, int(getattr(args, key)))
    config.symbols = args.symbols
    config.per_client = min(args.per_client or config.symbols, config.symbols)
    config.multi_web_procs = args.multi_web_procs
    config.client_procs = args.client_procs
    config.concurrency = args.concurrency
    if args.profile:
        config.profile = args.profile
    if config.profile in PROFILE_OFF:
        config.profile = ""
    config.ref, config.keep, config.out = args.ref, args.keep, args.out
    if config.sync_rate not in config.rates:
        config.sync_rate = max(config.rates)
    return config


def parse_args(argv: list[str] | None = None) -> Config:
    """Build the configuration from flags, ``BENCH_*`` variables and the quick preset."""
    return _config(_parser().parse_args(argv))


@dataclass
class Scenario:
    """One measured load against one target."""

    kind: str  # stream | depth | sync | idle | storm | restart
    clients: int
    rate: float
    per_client: int
    web_procs: int = 1
    profiled: bool = False

    def label(self) -> str:
        """The scenario's name in the tables and logs, e.g. ``"stream 500x50 @200"``."""
        if self.kind == "idle":
            return f"idle {self.clients}"
        if self.kind == "sync":
            return f"sync {self.clients}x1 @{self.rate:.0f}"
        if self.kind == "storm":
            return f"connect storm {self.clients}x{self.per_client} @{self.rate:.0f}"
        if self.kind == "restart":
            return f"restart storm {self.clients}x{self.per_client} @{self.rate:.0f}"
        web = f" {self.web_procs}web" if self.web_procs > 1 else ""
        profiled = " profiled" if self.profiled else ""
        if self.kind == "depth":
            # Every dashboard: per_client symbols' ticks + 1 symbol's depth and trades.
            return f"depth {self.clients}x{self.per_client}+1 @{self.rate:.0f}{profiled}"
        return f"stream {self.clients}x{self.per_client} @{self.rate:.0f}{web}{profiled}"


def scenarios_for(config: Config, name: str) -> list[Scenario]:
    """The scenarios of target ``name`` in order: idle, the fan-outs by rate, then Ticker's own."""
    cfg = config
    plan: list[Scenario] = []
    if cfg.idle > 0 and (name == "ticker" or cfg.ref_idle):
        plan.append(Scenario("idle", cfg.idle, cfg.rates[0], 0))
    if name == "naive":
        loads = [parse_load(load, cfg.rates[0]) for load in cfg.naive_loads]
        for rate in dict.fromkeys(rate for _, rate in loads):  # grouped by rate, in order
            plan += [Scenario("stream", n, r, cfg.per_client) for n, r in loads if r == rate]
    else:
        depth = [Scenario("depth", cfg.depth_clients, cfg.depth_rate, cfg.per_client)] if cfg.depth_clients > 0 else []
        for rate in cfg.rates:
            plan += [Scenario("stream", n, rate, cfg.per_client) for n in cfg.clients]
            if rate == cfg.depth_rate:  # beside the fan-outs of its rate: no rate change for it
                plan += depth
                depth = []
        plan += depth
    if name != "ticker":
        return plan
    if cfg.sync_clients > 0:
        plan.append(Scenario("sync", cfg.sync_clients, cfg.sync_rate, 1))
    if cfg.storm > 0:
        plan.append(Scenario("storm", cfg.storm, cfg.rates[0], cfg.per_client))
    if cfg.restart_storm > 0:
        plan.append(Scenario("restart", cfg.restart_storm, cfg.rates[0], cfg.per_client))
    if cfg.profile:
        # py-spy samples Daphne during a repeat of that scenario, never a measured one: the
        # sampler takes CPU from the same two cores, which moved p99 by up to 40 %.
        clients, rate = parse_load(cfg.profile, cfg.rates[0])
        plan.append(Scenario("stream", clients, rate, cfg.per_client, profiled=True))
    if cfg.depth_profile and cfg.depth_clients > 0:
        plan.append(Scenario("depth", cfg.depth_clients, cfg.depth_rate, cfg.per_client, profiled=True))
    return plan


def multi_web_scenario(config: Config) -> Scenario | None:
    """The fan-out spread over several Daphne processes, when asked for and Ticker runs."""
    if "ticker" in config.targets and config.multi_web > 0 and config.multi_web_procs > 1:
        return Scenario(
            "stream", config.multi_web, config.rates[0], config.per_client, web_procs=config.multi_web_procs
        )
    return None


def users_needed(config: Config) -> int:
    """How many traders Ticker's database needs: one per dashboard of its largest scenario."""
    cfg = config
    users = max(
        [*cfg.clients, cfg.idle, cfg.sync_clients, cfg.multi_web, cfg.depth_clients, cfg.storm + cfg.storm_base, 1]
    )
    return max(users, cfg.restart_storm)


def client_procs(config: Config, clients: int, cpus: int | None = None) -> int:
    """Load-client processes for ``clients`` dashboards: as configured, else one per 400, at most one per CPU."""
    if config.client_procs > 0:
        return min(config.client_procs, clients)
    cpus = cpus if cpus is not None else os.cpu_count() or 1
    return max(1, min(cpus, math.ceil(clients / CLIENTS_PER_PROCESS)))


def split(clients: int, procs: int) -> list[int]:
    """``clients`` shared among ``procs`` processes as evenly as possible, the first ones taking the rest."""
    return [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]


def connect_budget(config: Config, target: str) -> float:
    """Seconds the load clients of ``target`` may take to connect (the tutorial pattern gets less)."""
    return config.naive_connect_budget if target == "naive" else config.connect_budget
