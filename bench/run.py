"""The orchestrator of ``make bench``: start each server, run the load client against it, report.

For every target (Ticker, the floor, the naive tutorial pattern) it starts the whole
server on 127.0.0.1, then runs the scenarios in order: idle connections (memory per
connection, measured on a fresh server), then dashboards x symbols at each producer
rate, then (Ticker) the sync single-symbol endpoint and the fan-out on two Daphne
processes. Every scenario is bounded: connect budget, warm-up, measurement window,
result deadline; the whole run has a deadline too. Everything started is stopped in
``finally`` blocks, by process group.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench import charts, profile, report
from bench.probe import PublishLagProbe
from bench.procs import ManagedProcess, ProcessSampler, raise_nofile_limit, rss_of, wait_for
from bench.targets import PYTHON, REPO, FloorTarget, NaiveTarget, Target, TickerTarget, base_env

logger = logging.getLogger("bench")

RESULTS = REPO / "bench" / "results"


def parse_load(text: str, default_rate: float) -> tuple[int, float]:
    """``"500@200"`` -> (500 clients, 200 ticks/s)."""
    clients, _, rate = text.partition("@")
    return int(clients), float(rate or default_rate)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


@dataclass
class Config:
    """Sizes and durations of a run (CLI flags, defaulting to ``BENCH_*`` environment variables)."""

    clients: list[int] = field(default_factory=lambda: [100, 500, 1000])
    rates: list[float] = field(default_factory=lambda: [200.0, 1000.0])
    symbols: int = 50
    per_client: int = 50
    duration: float = 8.0
    warmup: float = 2.0
    idle: int = 2000
    sync_clients: int = 200
    sync_rate: float = 1000.0
    multi_web: int = 1000
    multi_web_procs: int = 2
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
    "warmup": 1.0,
    "idle": 300,
    "sync_clients": 50,
    "multi_web": 0,
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


def parse_args(argv: list[str] | None = None) -> Config:
    """Build the configuration from flags, ``BENCH_*`` variables and the quick preset."""
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", default=env("BENCH_QUICK", "") == "1", help="~2 min preset")
    parser.add_argument("--clients", default=env("BENCH_CLIENTS"), help="dashboards per scenario, e.g. 100,500,1000")
    parser.add_argument("--rates", default=env("BENCH_RATES"), help="producer ticks/s in total, e.g. 200,1000")
    parser.add_argument("--symbols", type=int, default=int(env("BENCH_SYMBOLS", "50")), help="symbols in the market")
    parser.add_argument("--per-client", type=int, default=None, help="symbols each dashboard subscribes to")
    parser.add_argument("--duration", type=float, default=env("BENCH_DURATION"), help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=env("BENCH_WARMUP"), help="seconds between connect and measure")
    parser.add_argument("--idle", type=int, default=env("BENCH_IDLE"), help="idle connections (0: skip)")
    parser.add_argument("--sync-clients", type=int, default=env("BENCH_SYNC_CLIENTS"), help="sync endpoint (0: skip)")
    parser.add_argument("--sync-rate", type=float, default=env("BENCH_SYNC_RATE"), help="rate for the sync scenario")
    parser.add_argument("--multi-web", type=int, default=env("BENCH_MULTI_WEB"), help="dashboards on several Daphnes")
    parser.add_argument("--multi-web-procs", type=int, default=int(env("BENCH_MULTI_WEB_PROCS", "2")))
    parser.add_argument(
        "--naive-loads", default=env("BENCH_NAIVE_LOADS"), help="CLIENTS@RATE list for the naive reference"
    )
    parser.add_argument("--targets", default=env("BENCH_TARGETS"), help="ticker,floor,naive")
    parser.add_argument("--client-procs", type=int, default=int(env("BENCH_CLIENT_PROCS", "0")))
    parser.add_argument(
        "--concurrency", type=int, default=int(env("BENCH_CONCURRENCY", "25")), help="handshakes at once"
    )
    parser.add_argument("--max-minutes", type=float, default=env("BENCH_MAX_MINUTES"), help="deadline of the whole run")
    parser.add_argument(
        "--profile",
        default=env("BENCH_PROFILE"),
        help="py-spy Daphne during a repeat of Ticker's CLIENTS@RATE scenario (full run: 500@200; off: none)",
    )
    parser.add_argument("--storm", type=int, default=env("BENCH_STORM"), help="connect-storm dashboards (0: skip)")
    parser.add_argument("--storm-base", type=int, default=env("BENCH_STORM_BASE"), help="dashboards already connected")
    parser.add_argument(
        "--storm-concurrency", type=int, default=env("BENCH_STORM_CONCURRENCY"), help="storm handshakes in flight"
    )
    parser.add_argument(
        "--restart-storm", type=int, default=env("BENCH_RESTART_STORM"), help="dashboards across a restart (0: skip)"
    )
    parser.add_argument(
        "--storm-profile", default=env("BENCH_STORM_PROFILE"), help="py-spy Daphne during the connect storm (on/off)"
    )
    parser.add_argument("--ref", default=env("BENCH_REF", ""), help="benchmark this git ref of Ticker (git archive)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    parser.add_argument("--out", default=env("BENCH_OUT", str(RESULTS)), help="results directory")
    args = parser.parse_args(argv)

    config = Config()
    if args.quick:
        for key, value in QUICK.items():
            setattr(config, key, value)
        config.quick = True
    if args.clients:
        config.clients = _ints(args.clients)
    if args.rates:
        config.rates = _floats(args.rates)
    if args.naive_loads is not None:
        config.naive_loads = [x.strip() for x in args.naive_loads.split(",") if x.strip()]
    if args.targets:
        config.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for key in ("duration", "warmup", "sync_rate", "max_minutes"):
        value = getattr(args, key)
        if value is not None:
            setattr(config, key, float(value))
    if args.storm_profile is not None:
        config.storm_profile = args.storm_profile not in ("off", "0", "no", "false")
    for key in ("idle", "sync_clients", "multi_web", "storm", "storm_base", "storm_concurrency", "restart_storm"):
        value = getattr(args, key)
        if value is not None:
            setattr(config, key, int(value))
    config.symbols = args.symbols
    config.per_client = min(args.per_client or config.symbols, config.symbols)
    config.multi_web_procs = args.multi_web_procs
    config.client_procs = args.client_procs
    config.concurrency = args.concurrency
    if args.profile:
        config.profile = args.profile
    if config.profile in ("off", "0", "none"):
        config.profile = ""
    config.ref = args.ref
    config.keep = args.keep
    config.out = args.out
    if config.sync_rate not in config.rates:
        config.sync_rate = max(config.rates)
    return config


# --- load-client processes ----------------------------------------------------------------


class ClientGroup:
    """The load-client processes of one scenario and the JSON lines they print."""

    def __init__(self, workdir: Path, label: str) -> None:
        self.workdir = workdir
        self.label = label
        self.processes: list[ManagedProcess] = []
        self.lines: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()

    def spawn(self, specs: list[dict[str, Any]]) -> None:
        slug = "".join(c if c.isalnum() else "-" for c in self.label)
        for spec in specs:
            index = len(self.processes)
            path = self.workdir / f"client-{slug}-{index}.json"
            path.write_bytes(orjson.dumps(spec))
            process = ManagedProcess(
                f"client{index}",
                [PYTHON, "-m", "bench.loadclient", str(path)],
                self.workdir / f"client-{slug}-{index}.log",
                REPO,
                base_env({"PYTHONPATH": str(REPO)}),
                stdin_pipe=True,
                stdout_pipe=True,
            ).start()
            self.processes.append(process)
            threading.Thread(target=self._read, args=(index, process), daemon=True).start()

    def _read(self, index: int, process: ManagedProcess) -> None:
        assert process.popen is not None
        assert process.popen.stdout is not None
        for raw in process.popen.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put((index, orjson.loads(raw)))
        self.lines.put((index, {"event": "exit"}))

    def collect(self, event: str, indexes: set[int], timeout: float) -> dict[int, dict[str, Any]]:
        """Wait for ``event`` from each process in ``indexes`` (a process that exits counts as failed)."""
        got: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        pending = set(indexes)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.warning("%s: no %r from load clients %s in %.0f s", self.label, event, sorted(pending), timeout)
                break
            try:
                index, line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line.get("event") == event and index in pending:
                got[index] = line
                pending.discard(index)
            elif line.get("event") == "exit" and index in pending:
                logger.warning("%s: load client %d exited early:\n%s", self.label, index, self.processes[index].tail())
                pending.discard(index)
        return got

    def send(self, command: str, indexes: set[int] | None = None) -> None:
        for i, process in enumerate(self.processes):
            if indexes is not None and i not in indexes:
                continue
            if process.popen is not None and process.popen.stdin is not None:
                with contextlib.suppress(OSError):
                    process.popen.stdin.write((command + "\n").encode())
                    process.popen.stdin.flush()

    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self.processes if p.alive()}

    def close(self, timeout: float = 20.0) -> None:
        self.send("close")
        self.collect("closed", {i for i, p in enumerate(self.processes) if p.alive()}, timeout)
        for process in self.processes:
            process.stop(timeout=5)


# --- scenarios ----------------------------------------------------------------------------


@dataclass
class Scenario:
    """One measured load against one target."""

    kind: str  # stream | sync | idle | storm | restart
    clients: int
    rate: float
    per_client: int
    web_procs: int = 1
    profiled: bool = False

    def label(self) -> str:
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
        return f"stream {self.clients}x{self.per_client} @{self.rate:.0f}{web}{profiled}"


class Runner:
    """Runs every scenario of a configuration and collects the results."""

    def __init__(self, config: Config, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.results: list[dict[str, Any]] = []
        self.skipped: list[str] = []
        self.profile: dict[str, Any] | None = None
        self.storm_profile: dict[str, Any] | None = None
        self.started = time.monotonic()
        self.deadline = self.started + config.max_minutes * 60
        self.stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ") + ("-quick" if config.quick else "")
        self.product = REPO

    # --- plan -------------------------------------------------------------------------

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def client_procs(self, clients: int) -> int:
        if self.config.client_procs > 0:
            return min(self.config.client_procs, clients)
        return max(1, min(os.cpu_count() or 1, math.ceil(clients / 400)))

    def budget(self, target: Target) -> float:
        return self.config.naive_connect_budget if target.name == "naive" else self.config.connect_budget

    def make_target(self, name: str, web_procs: int = 1) -> Target:
        if name == "ticker":
            cfg = self.config
            users = max([*cfg.clients, cfg.idle, cfg.sync_clients, cfg.multi_web, cfg.storm + cfg.storm_base, 1])
            users = max(users, cfg.restart_storm)
            return TickerTarget(self.workdir, cfg.symbols, self.product, web_procs=web_procs, users=users)
        if name == "naive":
            return NaiveTarget(self.workdir, self.config.symbols)
        if name == "floor":
            return FloorTarget(self.workdir, self.config.symbols)
        raise ValueError(f"unknown target {name!r}")

    def plan(self, name: str) -> list[Scenario]:
        cfg = self.config
        plan: list[Scenario] = []
        if cfg.idle > 0 and (name == "ticker" or cfg.ref_idle):
            plan.append(Scenario("idle", cfg.idle, cfg.rates[0], 0))
        if name == "naive":
            loads = [parse_load(load, cfg.rates[0]) for load in cfg.naive_loads]
            for rate in dict.fromkeys(rate for _, rate in loads):  # grouped by rate, in order
                plan += [Scenario("stream", n, r, cfg.per_client) for n, r in loads if r == rate]
        else:
            for rate in cfg.rates:
                plan += [Scenario("stream", n, rate, cfg.per_client) for n in cfg.clients]
        if name == "ticker" and cfg.sync_clients > 0:
            plan.append(Scenario("sync", cfg.sync_clients, cfg.sync_rate, 1))
        if name == "ticker" and cfg.storm > 0:
            plan.append(Scenario("storm", cfg.storm, cfg.rates[0], cfg.per_client))
        if name == "ticker" and cfg.restart_storm > 0:
            plan.append(Scenario("restart", cfg.restart_storm, cfg.rates[0], cfg.per_client))
        if name == "ticker" and cfg.profile:
            # py-spy samples Daphne during a repeat of that scenario, never a measured one: the
            # sampler takes CPU from the same two cores, which moved p99 by up to 40 %.
            clients, rate = parse_load(cfg.profile, cfg.rates[0])
            plan.append(Scenario("stream", clients, rate, cfg.per_client, profiled=True))
        return plan

    # --- running --------------------------------------------------------------------

    def run(self) -> None:
        cfg = self.config
        # What is measured is fixed now: HEAD may move while the run goes on.
        self.commit = self.git("rev-parse", "--short", cfg.ref or "HEAD")
        self.dirty = not cfg.ref and bool(self.git("status", "--porcelain", "--", "dashboard", "workers", "ticker"))
        self.busy_before = self.machine_busy()
        if self.busy_before > 30:
            logger.warning(
                "this machine is already busy (%.0f %% of a core used by other processes): figures will be lower",
                self.busy_before,
            )
        if cfg.ref:
            self.product = self.export(cfg.ref)
        for name in cfg.targets:
            self.run_target(name, 1, self.plan(name))
        if "ticker" in cfg.targets and cfg.multi_web > 0 and cfg.multi_web_procs > 1:
            scenario = Scenario("stream", cfg.multi_web, cfg.rates[0], cfg.per_client, web_procs=cfg.multi_web_procs)
            self.run_target("ticker", cfg.multi_web_procs, [scenario])

    @staticmethod
    def machine_busy(seconds: float = 1.0) -> float:
        """Percent of one core the machine spends busy over ``seconds`` before anything starts."""
        before = ProcessSampler.host_busy()
        time.sleep(seconds)  # the sampling interval
        return round(100.0 * (ProcessSampler.host_busy() - before) / seconds, 1)

    def export(self, ref: str) -> Path:
        """A clean copy of Ticker at ``ref`` (the harness itself stays this checkout's)."""
        dest = self.workdir / "product"
        dest.mkdir(parents=True)
        git = ["git", "-C", str(REPO), "archive", self.commit or ref]
        archive = subprocess.run(git, check=True, capture_output=True, timeout=60)  # noqa: S603
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=60)  # noqa: S603, S607
        logger.info("benchmarking Ticker at %s (exported to %s)", ref, dest)
        return dest

    def run_target(self, name: str, web_procs: int, plan: list[Scenario]) -> None:
        if self.remaining() < 60:
            self.skipped += [f"{name} {s.label()}: run deadline reached" for s in plan]
            return
        target = self.make_target(name, web_procs)
        try:
            started = time.monotonic()
            target.start(plan[0].rate)
            target.wait_rate(plan[0].rate)
            # The producer's rate since the rate was set, over a span of minutes: the expected
            # delivery uses it (seq advances in whole windows, so short spans are +-1 window off).
            self.rate_origin = (target.seqs(), time.monotonic())
            logger.info("%s started in %.1f s (web on %s)", name, time.monotonic() - started, target.web_ports)
            for scenario in plan:
                needed = self.budget(target) / 2 + self.config.warmup + self.config.duration + 15
                if self.remaining() < needed:
                    self.skipped.append(f"{name} {scenario.label()}: run deadline reached")
                    continue
                try:
                    self.results.append(self.run_scenario(target, scenario))
                except Exception as exc:
                    logger.exception("%s %s failed", name, scenario.label())
                    self.skipped.append(f"{name} {scenario.label()}: failed ({exc!r})")
                    with contextlib.suppress(Exception):
                        target.restart_web()
                self.print_last()
        except Exception as exc:
            logger.exception("%s could not run", name)
            self.skipped.append(f"{name}: could not run ({exc!r})")
            logger.error("logs of %s:\n%s", name, target.logs())
        finally:
            target.stop()

    def print_last(self) -> None:
        if self.results:
            logger.info("\n%s", report.render_table(self.results[-1:]))

    def settle(self, target: Target, names: list[str]) -> list[str]:
        """Wait (bounded) for the web processes to go quiet after the previous scenario."""
        notes: list[str] = []
        pids = target.pids()

        def quiet() -> bool:
            sampler = ProcessSampler({n: pids[n] for n in names if n in pids})
            sampler.start()
            time.sleep(0.5)  # the sampling interval
            return all(v["cpu_pct"] < 25 for v in sampler.stop().values())

        try:
            wait_for(quiet, 15, f"{target.name} web processes to go quiet", interval=0)
        except TimeoutError:
            notes.append("web still busy from the previous scenario: restarted it")
            target.restart_web()
        return notes

    def specs(self, target: Target, scenario: Scenario) -> list[dict[str, Any]]:
        procs = self.client_procs(scenario.clients)
        share = [scenario.clients // procs + (1 if i < scenario.clients % procs else 0) for i in range(procs)]
        if scenario.kind == "sync":
            urls = target.sync_urls(target.symbols[0], scenario.web_procs)
        else:
            urls = target.stream_urls(scenario.web_procs)
        mode = "stream" if scenario.kind in ("storm", "restart") else scenario.kind
        specs, first = [], 0
        for n in share:
            specs.append(
                {
                    "urls": urls,
                    "mode": mode,
                    "clients": n,
                    "symbols": target.symbols[: scenario.per_client] if mode == "stream" else [],
                    "headers": target.headers(),
                    "cookies": target.cookies(),
                    "origin": target.origin(),
                    "first_index": first,
                    "concurrency": max(1, self.config.concurrency // procs),
                    "connect_budget": self.budget(target),
                    "ready_timeout": min(20.0, self.budget(target)),
                    "max_seconds": self.budget(target) + self.config.warmup + self.config.duration + 120,
                }
            )
            first += n
        return specs

    def run_scenario(self, target: Target, scenario: Scenario) -> dict[str, Any]:
        cfg = self.config
        label = scenario.label()
        logger.info("%s: %s", target.name, label)
        if target.rate != scenario.rate:
            target.set_rate(scenario.rate)
            target.wait_rate(scenario.rate)
            self.rate_origin = (target.seqs(), time.monotonic())
        web_names = target.web_names(scenario.web_procs)
        notes = self.settle(target, web_names)
        # The producer's rate is taken over the whole scenario (seq moves in window steps,
        # so a short span would carry a +-1 window error).
        self.seqs_start = (target.seqs(), time.monotonic())
        group = ClientGroup(self.workdir, f"{target.name} {label}")
        result: dict[str, Any] = {
            "target": target.name,
            "scenario": label,
            "kind": scenario.kind,
            "clients_requested": scenario.clients,
            "symbols_per_client": scenario.per_client,
            "rate": scenario.rate,
            "web_procs": scenario.web_procs,
            "profiled": scenario.profiled,
            "notes": notes,
        }
        try:
            if scenario.kind == "storm":
                self.connect_storm(target, scenario, group, result)
                return result
            if scenario.kind == "restart":
                self.restart_storm(target, scenario, group, result)
                return result
            if scenario.kind == "idle":
                self.connect_idle(target, scenario, group, result)
            else:
                specs = self.specs(target, scenario)
                group.spawn(specs)
                connected = group.collect("connected", set(range(len(specs))), self.budget(target) + 30)
                self.note_connected(result, connected.values(), len(specs))
            # Warm-up: let connection bursts and queues settle before counting.
            time.sleep(cfg.warmup)
            self.measure(target, scenario, group, result)
        finally:
            group.close()
        return result

    def connect_storm(self, target: Target, scenario: Scenario, group: ClientGroup, result: dict[str, Any]) -> None:
        """STORM dashboards open at once (no retry) while STORM_BASE connected ones are measured.

        Time to all-live: from the storm's start instant to the last dashboard holding every
        snapshot. Failures: handshakes that did not complete, ``unavailable`` error frames.
        The connected dashboards are measured from the storm's start until its last
        dashboard is live (not over the whole budget, which would dilute the storm with the
        calm after it). With STORM_PROFILE, py-spy samples Daphne during a second storm,
        which is not measured.
        """
        cfg = self.config
        base = Scenario("stream", cfg.storm_base, scenario.rate, scenario.per_client)
        specs = self.specs(target, base)
        group.spawn(specs)
        got = group.collect("connected", set(range(len(specs))), self.budget(target) + 30)
        result["base_connected"] = sum(line.get("connected", 0) for line in got.values())
        time.sleep(cfg.warmup)  # the base dashboards settle before the storm
        start_at, lines, base_lines, usage, sampler = self.storm_once(
            target, scenario, group, len(specs), measured=True
        )
        if cfg.storm_profile:
            time.sleep(cfg.warmup)  # the first storm's sockets closed and settled
            try:
                self.storm_once(target, scenario, group, len(specs), measured=False)
            except Exception as exc:  # the profile is a bonus: the measured storm stands
                logger.warning("profiled storm failed: %r", exc)
                result["notes"].append(f"the profiled repeat of the storm failed: {exc!r}")
        connected = sum(line.get("connected", 0) for line in lines.values())
        failures: dict[str, int] = {}
        errors: dict[str, int] = {}
        for line in lines.values():
            for reason, n in line.get("failures", {}).items():
                failures[reason] = failures.get(reason, 0) + n
            for code, n in line.get("error_codes", {}).items():
                errors[code] = errors.get(code, 0) + n
        last = max((line.get("last_ready_at", 0.0) for line in lines.values()), default=0.0)
        hist = report.merge_hist(line.get("latency_hist", {}) for line in base_lines.values())
        web = target.web_names(1)[0]
        result.update(
            {
                "clients_connected": connected,
                "clients_text": f"{connected}/{scenario.clients}" if connected != scenario.clients else str(connected),
                "connect_failures": failures,
                "failed_handshakes": scenario.clients - connected,
                "error_codes": errors,
                "unavailable": errors.get("unavailable", 0),
                "all_live_s": round(last - start_at, 2) if last and connected == scenario.clients else None,
                "last_live_s": round(last - start_at, 2) if last else None,
                "storm_concurrency": cfg.storm_concurrency,
                "base_clients": cfg.storm_base,
                "lost": sum(line.get("lost", 0) for line in base_lines.values()),
                "p50_ms": report.percentile(hist, 0.50),
                "p99_ms": report.percentile(hist, 0.99),
                "max_ms": max((line.get("max_latency_ms", 0) for line in base_lines.values()), default=None),
                "base_ticks": sum(line.get("ticks", 0) for line in base_lines.values()),
                "web_cpu_pct": round(usage.get(web, {}).get("cpu_pct", 0.0), 1),
                "web_rss_mib": round(usage.get(web, {}).get("rss_mib", 0.0), 1),
                "other_cpu_pct": sampler.other_cpu_pct,
                "client_cpu_text": "{:.0f}/{}p{}".format(
                    sum(v["cpu_pct"] for n, v in usage.items() if n.startswith("storm-")),
                    self.client_procs(scenario.clients),
                    " sat" if any(v["cpu_pct"] >= 90 for n, v in usage.items() if n.startswith("storm-")) else "",
                ),
                "duration_s": round(max(line.get("seconds", 0.0) for line in base_lines.values()), 2)
                if base_lines
                else None,
            }
        )
        if sampler.other_cpu_pct > 15:
            result["notes"].append(
                f"other processes on this machine used {sampler.other_cpu_pct:.0f} % of a core during the storm"
            )
        if failures:
            result["notes"].append(f"failed handshakes (no retry): {failures}")

    def storm_once(
        self, target: Target, scenario: Scenario, group: ClientGroup, base_procs: int, *, measured: bool
    ) -> tuple[
        float, dict[int, dict[str, Any]], dict[int, dict[str, Any]], dict[str, dict[str, float]], ProcessSampler
    ]:
        """One connect storm beside ``group``: its start, the storm's lines, the base's, usage, sampler."""
        cfg = self.config
        storm = ClientGroup(self.workdir, f"{target.name} {scenario.label()} storm")
        procs = self.client_procs(scenario.clients)
        start_at = time.time() + 3.0  # every load-client process imported and waiting
        window = cfg.storm_budget
        storm_specs = self.specs(target, scenario)
        for spec in storm_specs:
            spec.update(
                {
                    "retry": False,
                    "start_at": start_at,
                    "concurrency": max(1, cfg.storm_concurrency // procs),
                    "connect_budget": window,
                    "ready_timeout": window,
                    "open_timeout": window,
                    # Their own traders, after the base dashboards' ones.
                    "first_index": spec["first_index"] + cfg.storm_base,
                }
            )
        server = target.pids()
        base_lines: dict[int, dict[str, Any]] = {}
        try:
            storm.spawn(storm_specs)
            sampler = ProcessSampler({**server, **group.pids(), **{f"storm-{k}": v for k, v in storm.pids().items()}})
            if measured:
                group.send(f"measure {start_at} {start_at + window}")
            spy = None
            time.sleep(max(0.0, start_at - time.time()))  # until the storm starts
            if not measured:
                # The storm's first seconds, while dashboards are still opening, not the calm after.
                seconds = cfg.storm_profile_seconds
                spy = self.start_profile(target, server[target.web_names(1)[0]], scenario, seconds, "storm-profile")
            sampler.start()
            lines = storm.collect("connected", set(range(len(storm_specs))), window + 30)
            usage = sampler.stop()
            if measured:
                group.send("stop")  # the storm is over: its last dashboard is live (or gave up)
                base_lines = group.collect("result", set(range(base_procs)), window + 30)
            if spy is not None:
                self.finish_profile(spy, scenario, "storm-profile")
        finally:
            storm.close()
        return start_at, lines, base_lines, usage, sampler

    def restart_storm(self, target: Target, scenario: Scenario, group: ClientGroup, result: dict[str, Any]) -> None:
        """The web process restarted under RESTART_STORM dashboards: how long until all are back and resumed."""
        cfg = self.config
        specs = self.specs(target, scenario)
        procs = len(specs)
        for spec in specs:
            spec["resume"] = True
            spec["concurrency"] = max(1, cfg.storm_concurrency // procs)  # set up quickly: it is not measured
        group.spawn(specs)
        got = group.collect("connected", set(range(len(specs))), self.budget(target) + 30)
        self.note_connected(result, got.values(), len(specs))
        time.sleep(cfg.warmup)  # every dashboard has ticked since its snapshot
        budget = cfg.storm_budget
        restarted_at = time.time()
        target.restart_web()
        web_back_s = time.time() - restarted_at
        group.send(f"await-back {restarted_at} {restarted_at + budget}")
        lines = group.collect("back", set(range(len(specs))), budget + 30)
        back = sum(line.get("back", 0) for line in lines.values())
        lost_socket = sum(line.get("lost_socket", 0) for line in lines.values())
        errors: dict[str, int] = {}
        for line in lines.values():
            for code, n in line.get("error_codes", {}).items():
                errors[code] = errors.get(code, 0) + n
        last = max((line.get("last_back_s", 0.0) for line in lines.values()), default=None)
        connected = result.get("clients_connected", 0)
        result.update(
            {
                "clients_text": f"{back}/{connected}" if back != connected else str(back),
                "web_restart_s": round(web_back_s, 2),
                "lost_socket": lost_socket,
                "back": back,
                "all_live_s": last if back == connected and connected else None,
                "last_live_s": last,
                "resumed_symbols": sum(line.get("resumed", 0) for line in lines.values()),
                "resnapshot_symbols": sum(line.get("resnapshots", 0) for line in lines.values()),
                "reconnect_retries": sum(line.get("retries", 0) for line in lines.values()),
                "error_codes": errors,
                "unavailable": errors.get("unavailable", 0),
                "failed_handshakes": connected - back,
            }
        )

    def connect_idle(self, target: Target, scenario: Scenario, group: ClientGroup, result: dict[str, Any]) -> None:
        """Connect a tenth, note the web RSS, connect the rest: memory per connection is the slope."""
        web = target.pids()[target.web_names(1)[0]]
        first = max(1, scenario.clients // 10)
        specs = self.specs(target, Scenario("idle", first, scenario.rate, 0))
        specs[0]["clients"] = first
        group.spawn(specs[:1])
        got = group.collect("connected", {0}, self.budget(target) + 30)
        rss_a = self.stable_rss(web)
        rest = self.specs(target, Scenario("idle", scenario.clients - first, scenario.rate, 0))
        group.spawn(rest)
        got |= group.collect("connected", set(range(1, 1 + len(rest))), self.budget(target) + 30)
        rss_b = self.stable_rss(web)
        self.note_connected(result, got.values(), 1 + len(rest))
        second = sum(line.get("connected", 0) for i, line in got.items() if i > 0)
        result["web_rss_before_mib"] = round(rss_a / 2**20, 1)
        result["web_rss_after_mib"] = round(rss_b / 2**20, 1)
        if second > 0:
            result["kib_per_conn"] = round((rss_b - rss_a) / second / 1024, 1)

    @staticmethod
    def stable_rss(pid: int, timeout: float = 10.0) -> int:
        """RSS once it stops moving by more than 1 % over half a second (bounded)."""
        deadline = time.monotonic() + timeout
        last = rss_of(pid)
        while time.monotonic() < deadline:
            time.sleep(0.5)  # the sampling interval
            now = rss_of(pid)
            if abs(now - last) <= 0.01 * max(last, 1):
                return now
            last = now
        return last

    @staticmethod
    def note_connected(result: dict[str, Any], lines: Any, procs: int) -> None:
        lines = list(lines)
        connected = sum(line.get("connected", 0) for line in lines)
        failures: dict[str, int] = {}
        for line in lines:
            for reason, n in line.get("failures", {}).items():
                failures[reason] = failures.get(reason, 0) + n
        result["clients_connected"] = connected
        result["connect_failures"] = failures
        result["connect_retries"] = sum(line.get("retries", 0) for line in lines)
        result["connect_seconds"] = max((line.get("seconds", 0) for line in lines), default=None)
        if len(lines) < procs:
            result["notes"].append(f"{procs - len(lines)} load-client processes never reported")

    def measure(self, target: Target, scenario: Scenario, group: ClientGroup, result: dict[str, Any]) -> None:
        cfg = self.config
        indexes = set(range(len(group.processes)))
        server = target.pids()
        clients = group.pids()
        sampler = ProcessSampler({**server, **clients})
        t0 = time.time() + 0.3
        t1 = t0 + cfg.duration
        group.send(f"measure {t0} {t1}")
        spy = None
        if scenario.profiled:
            spy = self.start_profile(target, server[target.web_names(1)[0]], scenario)
        probe = None
        if target.probe_channel and target.redis is not None:
            probe = PublishLagProbe(target.redis.url, target.probe_channel)
            probe.start()
        time.sleep(max(0.0, t0 - time.time()))  # until the window opens
        sampler.start()
        if probe is not None:
            probe.open_window()
        while time.time() < t1:
            time.sleep(min(1.0, max(0.0, t1 - time.time())))  # RSS sampled once a second
            sampler.sample_rss()
        usage = sampler.stop()
        result["host_cpu_pct"] = sampler.host_cpu_pct
        result["other_cpu_pct"] = sampler.other_cpu_pct
        result["host_cpu_breakdown_pct"] = sampler.host_breakdown
        if sampler.other_cpu_pct > 15:
            result["notes"].append(
                f"other processes on this machine used {sampler.other_cpu_pct:.0f} % of a core during the window"
            )
        if probe is not None:
            lag = probe.stop()
            result["publish_lag_p50_ms"] = report.percentile(lag, 0.5)
            result["publish_lag_p99_ms"] = report.percentile(lag, 0.99)
        lines = group.collect("result", indexes, 30)
        seqs0, m0 = self.seqs_start
        seqs1, m1 = target.seqs(), time.monotonic()
        if spy is not None:
            self.finish_profile(spy, scenario)
        long0, l0 = self.rate_origin
        self.compute(target, scenario, result, usage, lines.values(), (seqs0, seqs1, m1 - m0), (long0, seqs1, m1 - l0))

    def compute(
        self,
        target: Target,
        scenario: Scenario,
        result: dict[str, Any],
        usage: dict[str, dict[str, float]],
        lines: Any,
        span: tuple[dict[str, int], dict[str, int], float],
        long_span: tuple[dict[str, int], dict[str, int], float],
    ) -> None:
        lines = list(lines)
        duration = self.config.duration
        subscribed = target.symbols[: scenario.per_client] if scenario.kind == "stream" else target.symbols[:1]
        client_names = [n for n in usage if n.startswith("client")]
        per_symbol = {s: (span[1][s] - span[0][s]) / span[2] for s in target.symbols}
        producer_tps = sum(per_symbol.values())
        steady = {s: (long_span[1][s] - long_span[0][s]) / long_span[2] for s in target.symbols}
        if abs(sum(steady.values()) - producer_tps) <= 0.1 * producer_tps:
            per_symbol = steady  # the producer kept its pace: use the precise long-run rate
        expected = 0.0 if scenario.kind == "idle" else sum(per_symbol[s] for s in subscribed) * scenario.clients
        ticks = sum(line.get("ticks", 0) for line in lines)
        frames = sum(line.get("frames", 0) for line in lines)
        hist = report.merge_hist(line.get("latency_hist", {}) for line in lines)
        web_names = target.web_names(scenario.web_procs)
        server_names = [n for n in usage if n not in client_names]
        web_cpu_s = sum(usage[n]["cpu_s"] for n in web_names if n in usage)
        stack_cpu_s = sum(usage[n]["cpu_s"] for n in server_names)
        client_pcts = [usage[n]["cpu_pct"] for n in client_names if n in usage]
        closed: dict[str, int] = {}
        types: dict[str, int] = {}
        for line in lines:
            for key, n in line.get("closed_codes", {}).items():
                closed[key] = closed.get(key, 0) + n
            for key, n in line.get("frame_types", {}).items():
                types[key] = types.get(key, 0) + n
        delivered = ticks / duration
        result.update(
            {
                "duration_s": duration,
                "producer_tps": round(producer_tps, 1),
                "expected_tps": round(expected, 1),
                "delivered_tps": round(delivered, 1),
                "delivered_pct": round(100.0 * delivered / expected, 1) if expected else None,
                "lost": sum(line.get("lost", 0) for line in lines),
                "duplicates": sum(line.get("duplicates", 0) for line in lines),
                "p50_ms": report.percentile(hist, 0.50),
                "p99_ms": report.percentile(hist, 0.99),
                "max_ms": max((line.get("max_latency_ms", 0) for line in lines), default=None) if ticks else None,
                "frames_per_s": round(frames / duration, 1),
                "ticks_per_frame": round(ticks / max(1, sum(line.get("tick_frames", 0) for line in lines)), 1),
                "mbytes_per_s": round(sum(line.get("bytes", 0) for line in lines) / duration / 1e6, 2),
                "web_cpu_pct": round(sum(usage[n]["cpu_pct"] for n in web_names if n in usage), 1),
                "web_rss_mib": round(sum(usage[n]["rss_mib"] for n in web_names if n in usage), 1),
                "stack_cpu_pct": round(sum(usage[n]["cpu_pct"] for n in server_names), 1),
                "client_cpu_pct": round(sum(client_pcts), 1),
                "client_cpu_max_pct": max(client_pcts, default=0.0),
                "client_procs": len(client_names),
                "cpu_per_frame_ms": round(1000.0 * web_cpu_s / frames, 4) if frames and ticks else None,
                "stack_cpu_per_frame_ms": round(1000.0 * stack_cpu_s / frames, 4) if frames and ticks else None,
                "web_us_per_tick": round(1e6 * web_cpu_s / ticks, 2) if ticks else None,
                "processes": usage,
                "closed_codes": closed,
                "frame_types": types,
                "errors": sum(line.get("errors", 0) for line in lines),
                "alive_at_end": sum(line.get("alive", 0) for line in lines),
            }
        )
        if result.get("publish_lag_p99_ms") is not None:
            result["publish_lag_text"] = f"{result['publish_lag_p50_ms']}/{result['publish_lag_p99_ms']}"
        connected = result.get("clients_connected", 0)
        result["clients_text"] = f"{connected}/{scenario.clients}" if connected != scenario.clients else str(connected)
        saturated = " sat" if result["client_cpu_max_pct"] >= 90 else ""
        result["client_cpu_text"] = f"{result['client_cpu_pct']:.0f}/{len(client_names)}p{saturated}"
        if result["alive_at_end"] < connected:
            result["notes"].append(f"{connected - result['alive_at_end']} connections closed during the run: {closed}")
        if result["connect_failures"]:
            result["notes"].append(
                f"failed handshake attempts (retried with backoff within the connect budget):"
                f" {result['connect_failures']}"
            )
        if scenario.profiled:
            result["notes"].append(
                "a repeat for the profile: py-spy sampled the web process during this window (--nonblocking,"
                " 250 Hz); not used in the comparisons"
            )
        if scenario.kind != "idle" and abs(producer_tps - scenario.rate) > 0.15 * scenario.rate:
            result["notes"].append(f"producer reached {producer_tps:.0f} of {scenario.rate:.0f} ticks/s")
        if result["client_cpu_max_pct"] >= 90:
            result["notes"].append("a load-client process was CPU-saturated: figures are bounded by the client")

    # --- profiling ----------------------------------------------------------------------

    def start_profile(
        self, target: Target, pid: int, scenario: Scenario, seconds: float = 0.0, name: str = "profile"
    ) -> ManagedProcess | None:
        out = Path(self.config.out) / f"{self.stamp}-{name}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            log = self.workdir / f"py-spy-{name}.log"
            spy = profile.recorder(pid, seconds or self.config.duration, out, log, base_env({}))
            return spy.start()
        except Exception as exc:
            logger.warning("no profile: %r", exc)
            return None

    def finish_profile(self, spy: ManagedProcess, scenario: Scenario, name: str = "profile") -> None:
        assert spy.popen is not None
        try:
            spy.popen.wait(30)
        except subprocess.TimeoutExpired:
            logger.warning("py-spy did not finish in time")
        spy.stop()
        out = Path(self.config.out) / f"{self.stamp}-{name}.txt"
        if not out.exists():
            logger.warning("py-spy wrote nothing:\n%s", spy.tail())
            return
        summary = {"scenario": f"ticker {scenario.label()}", "file": out.name, **profile.summarize(out)}
        if name == "profile":
            self.profile = summary
        else:
            self.storm_profile = summary

    # --- output -----------------------------------------------------------------------

    @staticmethod
    def git(*args: str) -> str:
        try:
            return subprocess.run(  # noqa: S603
                ["git", "-C", str(REPO), *args],  # noqa: S607
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (subprocess.SubprocessError, OSError):
            return ""

    def environment(self) -> dict[str, Any]:
        commit = getattr(self, "commit", "")
        dirty = getattr(self, "dirty", False)
        model = ""
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        versions = {}
        for dist in ("Django", "channels", "channels-redis", "daphne", "redis", "websockets", "Twisted", "orjson"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                versions[dist] = metadata.version(dist)
        return {
            "commit": commit,
            "dirty": dirty,
            "cpus": os.cpu_count(),
            "cpu_model": model,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "versions": versions,
            "nofile": raise_nofile_limit(),
            "busy_before_pct": getattr(self, "busy_before", None),
        }

    def document(self) -> dict[str, Any]:
        return {
            "stamp": self.stamp,
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "config": asdict(self.config),
            "environment": self.environment(),
            "results": self.results,
            "ratios": report.ratios(self.results),
            "skipped": self.skipped,
            "profile": self.profile,
            "storm_profile": self.storm_profile,
        }

    def write(self) -> tuple[Path, Path, dict[str, Any]]:
        doc = self.document()
        out = Path(self.config.out)
        out.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out / f"{self.stamp}.json", out / f"{self.stamp}.md"
        for path, text in ((json_path, json.dumps(doc, indent=1) + "\n"), (md_path, report.render_markdown(doc))):
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)
        try:
            doc["charts"] = [p.name for p in charts.write_charts(doc, out)]
        except Exception:
            logger.exception("charts not drawn")
        return json_path, md_path, doc


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks stop every child."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make bench`` / ``python -m bench``."""
    logging.basicConfig(
        level=os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    config = parse_args(argv)
    raise_nofile_limit()
    workdir = Path(tempfile.mkdtemp(prefix="ticker-bench-"))
    runner = Runner(config, workdir)
    logger.info("work directory %s; run deadline %.0f min", workdir, config.max_minutes)
    interrupted = False
    try:
        with terminate_as_interrupt():
            runner.run()
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted: writing what was measured")
    finally:
        json_path, md_path, doc = runner.write()
        if config.keep or interrupted:
            logger.info("logs kept in %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report.render_table(doc["results"]))
    storms = report.render_storms(doc["results"])
    if storms:
        print("\nStorms (Ticker, one Daphne):")
        print(storms)
    if doc["ratios"]:
        print("\nTicker against the references (same run):")
        print(report.render_ratios(doc["ratios"]))
    if doc["skipped"]:
        print("\nNot run: " + "; ".join(doc["skipped"]))
    shown = json_path.relative_to(REPO) if json_path.is_relative_to(REPO) else json_path
    print(f"\nWritten: {shown} and {md_path.name}" + "".join(f", {name}" for name in doc.get("charts", [])))
    return 1 if interrupted else 0
